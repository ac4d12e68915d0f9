//! Probes of the sandbox, for its tests: once sandboxed, the domain's host process itself tries
//! what a compromised runtime would, and says on stderr what happened (if it still lives). The
//! parent passes one on (`nebulet run --isolate` from `NEBULET_DOMAIN_PROBE`); none of them
//! gets past the sandbox.
//!
//! - `report`: prints what the sandbox applied;
//! - `open:PATH`: opens a host file;
//! - `connect:ADDRESS`: connects to a TCP address (the domain may not make a socket: killed);
//! - `syscall`: changes its directory, a system call outside the allow-list (killed);
//! - `socketpair`: makes a socket pair, a call that only the domain's start may make (its
//!   zygote's filter allows it; the domain's own takes it away: killed).

/// The variable `nebulet run --isolate` reads a probe from.
pub const PROBE_VARIABLE: &str = "NEBULET_DOMAIN_PROBE";

pub(crate) fn run(probe: &str) {
    let (kind, argument) = probe.split_once(':').unwrap_or((probe, ""));
    let outcome = match kind {
        "open" => std::fs::File::open(argument).map(drop),
        "connect" => std::net::TcpStream::connect(argument).map(drop),
        "syscall" => std::env::set_current_dir("/"),
        "socketpair" => rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map(drop)
        .map_err(std::io::Error::from),
        _ => Err(std::io::Error::other("unknown probe")),
    };
    match outcome {
        Ok(()) => eprintln!("nebulet domain probe: {probe}: succeeded"),
        Err(error) => eprintln!("nebulet domain probe: {probe}: {error}"),
    }
}
