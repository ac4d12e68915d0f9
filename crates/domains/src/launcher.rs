//! The kernel's way to start domains (`process_create_with`'s `PROCESS_CREATE_ISOLATED`, and so
//! `domain=isolated` on a manifest line): a [`DomainStarter`] that runs [`Domain::start`].

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nebulet_abi::ExitReason;
use nebulet_hosted::{DomainEnd, DomainRequest, DomainStart, DomainStarter, ExitStatus};

use crate::{Domain, DomainOptions};

/// Starts each domain the kernel asks for as a re-execution of `executable` (the `nebulet`
/// binary). Install it with `Emulator::enable_domains`.
#[derive(Debug)]
pub struct Launcher {
    executable: PathBuf,
    probe: Option<String>,
}

impl Launcher {
    /// Starts domains with the `nebulet` binary at `executable`.
    pub fn new(executable: PathBuf) -> Self {
        Self { executable, probe: None }
    }

    /// Gives every domain `probe`, a probe of its sandbox (see [`crate::PROBE_VARIABLE`]).
    pub fn with_probe(self, probe: Option<String>) -> Self {
        Self { probe, ..self }
    }
}

impl DomainStarter for Launcher {
    fn start(&self, request: DomainRequest, stdio: [OwnedFd; 3]) -> DomainStart {
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (executable, probe) = (self.executable.clone(), self.probe.clone());
        let ended = async move {
            let DomainRequest { name, module, bootstrap, limits, meter } = request;
            let fault = |message: String| DomainEnd {
                status: ExitStatus {
                    code: -1,
                    reason: ExitReason::DomainFault,
                    message: Some(format!("cannot start its domain: {message}")),
                },
                cpu_ns: 0,
            };
            // The creator's kernel compiled the module already: the domain loads that code.
            let module = match nebulet_hosted::serialize_module(module.engine(), &module) {
                Ok(module) => module,
                Err(error) => return fault(error),
            };
            let options = DomainOptions {
                stdio: Some(stdio),
                bootstrap,
                limits,
                compiled: true,
                probe,
                ..DomainOptions::new(executable, name)
            };
            let domain = match Domain::start(module, options).await {
                Ok(domain) => domain,
                Err(error) => return fault(error.to_string()),
            };
            // A dropped sender (the kernel let go of the kill) is no kill. Meanwhile the domain's
            // CPU time and memory are reported every tick (the kernel kills it when its budget
            // runs out).
            let metered = crate::domain::meter(domain.id(), domain.spun(), meter);
            let killed = async {
                tokio::select! {
                    told = killed => if told.is_err() { std::future::pending::<()>().await },
                    () = metered => {}
                }
            };
            let (status, cpu_ns) = domain.wait_or_kill(killed).await;
            DomainEnd { status, cpu_ns }
        };
        DomainStart {
            ended: Box::pin(ended),
            kill: Box::new(move || {
                let _ = kill.send(());
            }),
        }
    }
}
