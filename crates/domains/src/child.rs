//! The domain's side: `nebulet domain-child`, run with its socket to the parent as stdin. It
//! takes its descriptors and setup, sandboxes itself, then boots a kernel of its own and runs
//! the program, bridging its bootstrap channel, and tells the parent how the program ended.

use std::io::Write;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

use nebulet_hosted::{
    Console, Emulator, EngineOptions, HostDirectory, PreparedKernel, ProcessOptions,
};
use nebulet_kernel::ChannelEnd;
use nebulet_kernel::vfs::Directory;

use crate::bridge::{Bridge, Side};
use crate::sandbox::{self, Report};
use crate::wire::{self, Frame, Setup};

/// The engine and the rest of a domain's kernel that can be made before the domain started
/// (the zygote makes them before it forks).
static PREPARED: std::sync::OnceLock<PreparedKernel> = std::sync::OnceLock::new();

/// Makes the engine, the system calls' linker and the host's facts for the domains' kernels now
/// (the zygote, before its first fork: making them starts no thread).
pub(crate) fn prepare() {
    if let Ok(prepared) = PreparedKernel::new(&EngineOptions::default()) {
        let _ = PREPARED.set(prepared);
    }
    // rustix finds the vDSO's clock functions at its first clock reading, in each process.
    let _ = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
}

/// When a domain boots its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boot {
    /// Once its setup came: its sandbox lets it read only beneath the setup's preopens.
    AfterSetup,
    /// Before its setup comes, and then it waits for it (a spare, see `spare.rs`): its sandbox
    /// lets it read beneath no preopened directory, so it is given none.
    BeforeSetup,
}

/// Runs the domain; returns the host process's exit code (0 once the parent has been told how
/// the program ended; 1 with a message on stderr for a broken start).
pub fn main() -> i32 {
    run_in(sandbox::Network::Own, sandbox::Inherited::Nothing, Boot::AfterSetup)
}

/// [`main`] in a process whose network namespace is `network`, which `inherited` a part of its
/// seccomp policy, and which boots its kernel as `boot` says.
pub(crate) fn run_in(network: sandbox::Network, inherited: sandbox::Inherited, boot: Boot) -> i32 {
    match run(network, inherited, boot) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("nebulet domain: {message}");
            1
        }
    }
}

/// What a domain is given before it runs: its descriptors (stdio set already) and setup.
struct Given {
    setup: Setup,
    socket: std::os::unix::net::UnixStream,
    preopens: Vec<OwnedFd>,
    listeners: Vec<OwnedFd>,
}

fn failed(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |error| format!("{what}: {error}")
}

/// Takes the descriptors and the setup from the parent's socket (stdin), and makes the given
/// stdio this process's; `None` if the parent closed the socket before sending anything (a
/// spare it no longer needs).
fn receive() -> Result<Option<Given>, String> {
    let control = rustix::io::dup(std::io::stdin().as_fd())
        .map_err(|error| failed("no socket to the parent as stdin")(std::io::Error::from(error)))?;
    let mut descriptors = match crate::handoff::receive(&control) {
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        received => received.map_err(failed("no descriptors"))?,
    };
    let mut socket = std::os::unix::net::UnixStream::from(control);
    let body =
        wire::read_body_blocking(&mut socket, wire::MAX_SETUP_BYTES).map_err(failed("no setup"))?;
    let setup: Setup = wire::decode(&body).map_err(failed("a bad setup"))?;
    if descriptors.len() != 3 + setup.listeners + setup.preopens.len() {
        return Err("the descriptors do not match the setup".into());
    }
    let preopens = descriptors.split_off(3 + setup.listeners);
    let listeners = descriptors.split_off(3);
    let [input, output, error] =
        <[OwnedFd; 3]>::try_from(descriptors).map_err(|_| "no standard streams".to_string())?;
    let dup = |result: rustix::io::Result<()>| {
        result.map_err(|error| format!("cannot set up stdio: {error}"))
    };
    dup(rustix::stdio::dup2_stdin(&input))?;
    dup(rustix::stdio::dup2_stdout(&output))?;
    dup(rustix::stdio::dup2_stderr(&error))?;
    Ok(Some(Given { setup, socket, preopens, listeners }))
}

/// Sandboxes this process but for its system calls, whose files are `preopens`, and boots its
/// kernel.
fn boot_kernel(
    network: sandbox::Network,
    preopens: &[OwnedFd],
    report: &mut Report,
) -> Result<Emulator, String> {
    sandbox::enter_namespaces(network, report);
    sandbox::limit_resources(report);
    sandbox::restrict_files(preopens, report)?;
    let options = EngineOptions::default();
    fn failed(error: impl std::fmt::Display) -> String {
        format!("cannot start the kernel: {error:#}")
    }
    // A domain the zygote forked has them made already; an executed one makes them now.
    let prepared = match PREPARED.get() {
        Some(prepared) => prepared.clone(),
        None => PreparedKernel::new(&options).map_err(failed)?,
    };
    // One worker thread: a domain's processes run on one CPU at a time (see `with_prepared`).
    Emulator::with_prepared(Console::Stdout, &options, &prepared).map_err(failed)
}

fn run(network: sandbox::Network, inherited: sandbox::Inherited, boot: Boot) -> Result<(), String> {
    let mut report = Report::default();
    let (emulator, given) = match boot {
        Boot::AfterSetup => {
            let Some(given) = receive()? else { return Err("no descriptors came".into()) };
            (boot_kernel(network, &given.preopens, &mut report)?, given)
        }
        Boot::BeforeSetup => {
            let emulator = boot_kernel(network, &[], &mut report)?;
            // A spare the parent let go of (or a parent that ended) ends here, quietly.
            let Some(given) = receive()? else {
                // Its runtime's threads end with the process (see the end of `run`).
                std::mem::forget(emulator);
                return Ok(());
            };
            if !given.preopens.is_empty() {
                return Err("a domain booted before its setup was given directories".into());
            }
            (emulator, given)
        }
    };
    let Given { setup, socket, preopens: preopen_descriptors, listeners: listener_descriptors } =
        given;
    let cpu_limit = setup
        .limits
        .iter()
        .find(|&&(limit, _)| limit == nebulet_abi::Limit::CpuNanoseconds as u32)
        .map(|&(_, nanoseconds)| nanoseconds);
    sandbox::limit_cpu(cpu_limit, &mut report);
    sandbox::restrict_system_calls(inherited, &mut report)?;
    if setup.probe.as_deref() == Some("report") {
        for line in &report.lines {
            eprintln!("nebulet domain sandbox: {line}");
        }
    } else if let Some(probe) = &setup.probe {
        crate::probe::run(probe);
    }

    socket.set_nonblocking(true).map_err(failed("cannot use the socket"))?;
    let mut listeners = Vec::with_capacity(listener_descriptors.len());
    for descriptor in listener_descriptors {
        let socket = std::net::TcpListener::from(descriptor);
        let listener = nebulet_hosted::network::listen_on(emulator.runtime(), socket)
            .map_err(|error| format!("cannot use a listening socket: {error}"))?;
        listeners.push(listener);
    }
    let descriptors = Descriptors { preopens: preopen_descriptors, listeners };
    let status = emulator.block_on(serve(&emulator, setup, descriptors, socket));
    // The parent has been told, and every byte is out: the process exits now, and its exit
    // stops the runtime's threads. Stopping them one by one first (dropping the emulator) took
    // about 2 ms, the largest part of a small domain's start and end.
    std::mem::forget(emulator);
    status
}

/// What the program is given besides its setup.
struct Descriptors {
    preopens: Vec<OwnedFd>,
    listeners: Vec<Arc<nebulet_hosted::Listener>>,
}

/// Runs the program with its bridge until it ends, then tells the parent.
async fn serve(
    emulator: &Emulator,
    setup: Setup,
    descriptors: Descriptors,
    socket: std::os::unix::net::UnixStream,
) -> Result<(), String> {
    let module = if setup.compiled {
        emulator.load_precompiled(&setup.module).map_err(|error| format!("{error:?}"))
    } else {
        emulator.compile(&setup.module)
    };
    let mut socket = tokio::net::UnixStream::from_std(socket)
        .map_err(|error| format!("cannot use the socket: {error}"))?;
    if setup.share_code {
        // Sent, to the last byte, before the process starts: no guest code has run in here yet.
        let code = module
            .as_ref()
            .ok()
            .and_then(|module| nebulet_hosted::serialize_module(module.engine(), module).ok())
            .filter(|code| code.len() <= crate::code_cache::MAX_CODE_BYTES)
            .unwrap_or_default();
        socket
            .write_all(&wire::encode(&code))
            .await
            .map_err(|error| format!("cannot send the compiled code: {error}"))?;
    }
    // Each half registered with the poller only while it waits; while frames come close
    // together, the reader spins for the next (`bridge::split`).
    let (reader, outgoing) =
        crate::bridge::split(socket).map_err(|error| format!("cannot use the socket: {error}"))?;
    // Frames are read in bulk: one read takes what has arrived, not a frame's length first.
    let mut reader = tokio::io::BufReader::new(reader);
    tokio::spawn(outgoing.clone().flush_loop());
    let bridge = Bridge::new(Side::Domain, outgoing.clone(), emulator.runtime().clone());
    let preopens = setup
        .preopens
        .into_iter()
        .zip(descriptors.preopens)
        .map(|(guest, descriptor)| {
            (guest, Arc::new(HostDirectory::from_descriptor(descriptor)) as Arc<dyn Directory>)
        })
        .collect();
    let options = ProcessOptions {
        name: setup.name,
        args: setup.args,
        environment: setup.environment,
        preopens,
        listeners: descriptors.listeners,
        ..Default::default()
    };
    let limits: Vec<_> = setup
        .limits
        .iter()
        .filter_map(|&(limit, value)| Some((nebulet_abi::Limit::from_raw(limit)?, value)))
        .collect();
    let status = match module {
        Err(reason) => nebulet_hosted::ExitStatus {
            code: -1,
            reason: nebulet_abi::ExitReason::Trapped,
            message: Some(format!("cannot start: {reason}")),
        },
        Ok(module) => {
            let bootstrap = setup.bootstrap.then(|| {
                let (local, given) = ChannelEnd::crossing_pair();
                bridge.attach(wire::BOOTSTRAP, local);
                given
            });
            let process =
                emulator.kernel().spawn_with_bootstrap(module, options, &limits, bootstrap);
            let receiving = {
                let bridge = bridge.clone();
                async move {
                    while let Ok(Some(body)) = wire::read_body(&mut reader, usize::MAX).await {
                        let Ok(frame) = wire::decode::<Frame>(&body) else { break };
                        if bridge.receive(frame).is_err() {
                            break;
                        }
                    }
                    // The parent is gone: nothing in here can be told anything any more.
                    std::process::exit(1)
                }
            };
            let receiver = tokio::spawn(receiving);
            let status = process.wait().await;
            // What the process wrote last still crosses (checked every tick: once, at the end).
            while !bridge.is_flushed() {
                tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            }
            // And what it wrote to its connections reaches their clients, as `nebulet run`
            // waits for it (bounded: a client that does not read does not keep the domain). A
            // blocking thread waits only if something is left to send (starting one costs as
            // much as a small domain's run).
            if !nebulet_hosted::network::drain(std::time::Duration::ZERO) {
                let draining = tokio::task::spawn_blocking(|| {
                    nebulet_hosted::network::drain(nebulet_hosted::network::DRAIN_PATIENCE);
                });
                let _ = draining.await;
            }
            receiver.abort();
            status
        }
    };
    let _ = std::io::stdout().flush();
    // Before the `Exit` frame: once it has it, the parent kills this process.
    emulator.flush_console();
    let exit =
        Frame::Exit { code: status.code, reason: status.reason as u32, message: status.message };
    let _ = outgoing.send(exit);
    bridge.disconnect();
    outgoing.flushed().await.map_err(|_| "the socket to the parent broke".to_string())
}
