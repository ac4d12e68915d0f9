//! Probes of the sandbox, for its tests: once sandboxed, the domain's host process itself tries
//! what a compromised runtime would, and says on stderr what happened (if it still lives). The
//! parent passes one on (`nebulet run --isolate` from `NEBULET_DOMAIN_PROBE`); none of them
//! gets past the sandbox.
//!
//! - `report`: prints what the sandbox applied;
//! - `open:PATH`: opens a host file;
//! - `connect:ADDRESS`: connects to a TCP address (the domain may not make a socket: killed);
//! - `syscall`: changes its directory, a system call outside the allow-list (killed).

/// The variable `nebulet run --isolate` reads a probe from.
pub const PROBE_VARIABLE: &str = "NEBULET_DOMAIN_PROBE";

pub(crate) fn run(probe: &str) {
    let (kind, argument) = probe.split_once(':').unwrap_or((probe, ""));
    let outcome = match kind {
        "open" => std::fs::File::open(argument).map(drop),
        "connect" => std::net::TcpStream::connect(argument).map(drop),
        "syscall" => std::env::set_current_dir("/"),
        _ => Err(std::io::Error::other("unknown probe")),
    };
    match outcome {
        Ok(()) => eprintln!("nebulet domain probe: {probe}: succeeded"),
        Err(error) => eprintln!("nebulet domain probe: {probe}: {error}"),
    }
}
