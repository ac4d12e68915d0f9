//! The domain zygote: `nebulet domain-zygote`, a single-threaded host process started once (at a
//! process's first domain) that forks each domain's host process, so that a domain starts with
//! no `exec`, dynamic loading or start-up of its own. Both sides are here: [`start`] in the
//! process that asks for domains, [`main`] in the zygote.
//!
//! The zygote is a re-execution of the `nebulet` binary, whose stdin is its end of a socket
//! pair. First the parent sends it a slot (a memfd of 4 bytes, `SCM_RIGHTS`), which it maps.
//! For each domain, the parent sends it the domain's end of the domain's socket pair
//! (`SCM_RIGHTS`); the zygote forks with `CLONE_PARENT`, so the domain's host process is the
//! parent's child, not the zygote's, and answers with its process id (4 bytes, little-endian; a
//! negated `errno` if the fork failed). The fork's `CLONE_PARENT_SETTID` also has the kernel
//! write that id into the slot, before the copy runs: a parent whose zygote failed (killed,
//! stopped) reads it there once it has reaped the zygote, so no domain it forked is left
//! unreaped. The copy makes the socket its stdin, closes every other descriptor above stderr,
//! and runs `nebulet domain-child`'s code: everything a domain does (its sandbox first) happens
//! after the fork, in the domain.

mod fork;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::child::Boot;
use crate::host_process::HostProcess;

/// How long the parent waits for the zygote to take a request and answer: a fork takes well
/// under a millisecond, so a zygote that takes this long is stopped or broken. It is then
/// killed and replaced, and the parent never waits longer.
const PATIENCE: Duration = Duration::from_secs(2);

/// The zygote this process started, if any (one at a time, for one `nebulet` executable).
static ZYGOTE: Mutex<Option<Zygote>> = Mutex::new(None);

/// A request's tag (its one byte): fork a domain, with these flags.
const FORK: u8 = 1;

/// A flag of a request's tag, for tests of the zygote's failures: after the fork, stop
/// (`SIGSTOP`) before answering.
const STOP_AFTER_FORK: u8 = 2;

/// A flag of a request's tag: the domain boots its kernel before its setup comes (a spare,
/// see `spare.rs`).
const BOOT_AHEAD: u8 = 4;

/// Whether the next request has [`STOP_AFTER_FORK`] (see [`stop_zygote_after_next_fork`]).
static STOP_AFTER_NEXT_FORK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A running zygote, as its parent holds it.
#[derive(Debug)]
struct Zygote {
    executable: PathBuf,
    process: std::process::Child,
    /// The parent's end of the zygote's socket pair (blocking, with [`PATIENCE`] as timeouts).
    control: OwnedFd,
    /// The slot (a memfd) where the kernel writes the id of each domain the zygote forks, as
    /// part of the fork; 0 before each request.
    slot: OwnedFd,
    /// Whether a request was sent (after the slot was cleared) and not answered: only then
    /// may the slot hold the id of a domain no one holds.
    unanswered: std::cell::Cell<bool>,
}

/// The zygote's process id, if this process has one running (for tests of its failures).
pub fn zygote_id() -> Option<u32> {
    ZYGOTE.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|zygote| zygote.process.id())
}

/// For tests of the zygote's failures: the zygote that forks the next domain stops itself
/// (`SIGSTOP`) after the fork and before it answers, as a zygote killed or stopped in that
/// window would. The parent then kills it after its patience (2 seconds), or sees it end
/// sooner if the test kills it, and takes the domain from the slot (see the module's doc).
pub fn stop_zygote_after_next_fork() {
    STOP_AFTER_NEXT_FORK.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Starts a domain's host process: forked by the zygote of `executable` (started first if there
/// is none yet). Returns it with this side of its socket (its stdin is the other side). A
/// zygote that failed (it was killed, stopped, or broke) is replaced, once, and the log says
/// so; if the new one fails too, the domain's host process is executed instead (`nebulet
/// domain-child`), as without a zygote. A domain that a failed zygote forked before it
/// answered is found in the slot once the zygote is reaped, and is the one returned (no fork
/// is then asked of the new zygote). Blocks for the fork, at most about twice [`PATIENCE`]:
/// `Domain::start` calls it off the runtime's workers.
///
/// `handover` sends the domain what it reads first (its descriptors, and as much of its setup
/// as the socket takes without waiting) into this side of its socket, while the zygote forks:
/// the domain finds it there when it starts, instead of waiting for it after the answer. What
/// it gave (the setup's bytes sent, or its error) comes back with the domain. A zygote that
/// failed after a handover and cannot be reaped (or its slot read) could still have forked, or
/// fork, a domain that finds that setup: then no other domain is started for it (an error),
/// so no program runs twice.
pub(crate) fn start(executable: &Path, handover: Handover<'_>) -> io::Result<Started> {
    match fork(executable, Boot::AfterSetup, handover)? {
        Some(started) => Ok(started),
        None => execute(executable, handover),
    }
}

/// Forks a spare domain (see `spare.rs`): one that boots its kernel before its setup comes,
/// and then waits for it. Returns its host process and this side of its socket; an error if
/// no zygote can fork it (a spare is never executed).
pub(crate) fn fork_spare(executable: &Path) -> io::Result<(HostProcess, OwnedFd)> {
    match fork(executable, Boot::BeforeSetup, &|_| Ok(0))? {
        Some((host, socket, _)) => Ok((host, socket)),
        None => Err(io::Error::other("no domain zygote can fork")),
    }
}

/// [`start`]'s fork, of a domain that boots as `boot` says: `None` if no zygote can fork it.
fn fork(executable: &Path, boot: Boot, handover: Handover<'_>) -> io::Result<Option<Started>> {
    let mut zygote = ZYGOTE.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..2 {
        if zygote.as_ref().is_none_or(|running| running.executable != executable) {
            if let Some(old) = zygote.take() {
                let _ = old.stop();
            }
            match Zygote::spawn(executable) {
                Ok(started) => *zygote = Some(started),
                Err(error) => {
                    tracing::warn!(
                        "cannot start the domain zygote ({error}): executing the domain"
                    );
                    break;
                }
            }
        }
        let Some(running) = zygote.as_ref() else { break };
        let (ours, theirs) = socket_pair()?;
        let mut handed = None;
        let forked =
            running.fork(theirs.as_fd(), boot, &mut || handed = Some(handover(ours.as_fd())));
        match forked {
            Ok(pid) => {
                let handed = handed.unwrap_or_else(|| handover(ours.as_fd()));
                return Ok(Some((HostProcess::adopt(pid)?, ours, handed)));
            }
            Err(error) => {
                tracing::warn!("the domain zygote failed ({error}): starting a new one");
                let Some(failed) = zygote.take() else { break };
                // Once the zygote is reaped it forks nothing more, and the slot holds the id
                // of the domain it forked, if it did, which waits for its socket.
                match failed.stop() {
                    Ok(Some(pid)) => {
                        let handed = handed.unwrap_or_else(|| handover(ours.as_fd()));
                        return Ok(Some((HostProcess::adopt_child(pid)?, ours, handed)));
                    }
                    Ok(None) => {}
                    Err(error) if handed.is_some() => {
                        return Err(io::Error::other(format!(
                            "the domain zygote failed after the domain's setup was sent, and \
                             cannot be reaped or its slot read: {error}"
                        )));
                    }
                    Err(_) => {}
                }
            }
        }
    }
    Ok(None)
}

/// What [`start`] and [`execute`] give: the domain's host process, this side of its socket,
/// and what its handover gave (the setup's bytes it sent, or its error).
pub(crate) type Started = (HostProcess, OwnedFd, io::Result<usize>);

/// Sends a new domain what it reads first into this side of its socket, without waiting for
/// room: the setup's bytes sent (see [`start`]).
pub(crate) type Handover<'a> = &'a (dyn Fn(BorrowedFd<'_>) -> io::Result<usize> + Sync);

/// Starts a domain's host process as an execution of `executable` (`nebulet domain-child`),
/// without the zygote. Returns it with this side of its socket (its stdin is the other side),
/// to which `handover` sent first what it reads first (see [`start`]).
pub(crate) fn execute(executable: &Path, handover: Handover<'_>) -> io::Result<Started> {
    let (ours, theirs) = socket_pair()?;
    let child = std::process::Command::new(executable)
        .arg(crate::CHILD_COMMAND)
        .stdin(std::process::Stdio::from(theirs))
        .env_clear()
        .spawn()?;
    // Held (and reaped) by its pidfd from now on; `Child` neither kills nor waits when dropped.
    let pid = rustix::process::Pid::from_child(&child);
    let handed = handover(ours.as_fd());
    Ok((HostProcess::adopt(pid)?, ours, handed))
}

/// A Unix stream socket pair, both ends close-on-exec.
fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

impl Zygote {
    fn spawn(executable: &Path) -> io::Result<Self> {
        use rustix::net::sockopt::{Timeout, set_socket_timeout};
        let (control, theirs) = socket_pair()?;
        set_socket_timeout(&control, Timeout::Recv, Some(PATIENCE))?;
        set_socket_timeout(&control, Timeout::Send, Some(PATIENCE))?;
        let slot =
            rustix::fs::memfd_create("nebulet-zygote-slot", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&slot, SLOT_BYTES as u64)?;
        let process = std::process::Command::new(executable)
            .arg(crate::ZYGOTE_COMMAND)
            .stdin(std::process::Stdio::from(theirs))
            .env_clear()
            // The dynamic linker binds every symbol of the shared libraries at the zygote's
            // start, not at each first call: otherwise each domain bound glibc's and libgcc's
            // own calls again (the binary itself is bound at once already), writing their
            // tables, pages shared with the zygote that the write then copies.
            .env("LD_BIND_NOW", "1")
            // The allocator (mimalloc, the binary's) commits its arenas as it uses them, not
            // at once: committing at once wrote 5.7 MB of pages in the zygote (its anonymous
            // memory 6.7 MB against 1.1 MB), which each fork then copied the mappings of,
            // each domain's writes copied, and each domain's exit unmapped.
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .spawn()?;
        let unanswered = std::cell::Cell::new(false);
        let zygote =
            Self { executable: executable.to_path_buf(), process, control, slot, unanswered };
        // Its first message: the slot, which it maps before it takes any request.
        if let Err(error) = crate::handoff::send(zygote.control.as_fd(), &[zygote.slot.as_fd()]) {
            let _ = zygote.stop();
            return Err(error);
        }
        Ok(zygote)
    }

    /// Asks for a domain whose socket is `socket`: its host process's id. Runs `while_forking`
    /// once the request is sent, before the answer is read.
    fn fork(
        &self,
        socket: BorrowedFd<'_>,
        boot: Boot,
        while_forking: &mut dyn FnMut(),
    ) -> io::Result<rustix::process::Pid> {
        // The slot is written by the fork only: 0 means no domain was forked.
        if rustix::io::pwrite(&self.slot, &[0; SLOT_BYTES], 0)? != SLOT_BYTES {
            return Err(io::Error::other("cannot clear the slot"));
        }
        let stop = STOP_AFTER_NEXT_FORK.swap(false, std::sync::atomic::Ordering::SeqCst);
        let tag = FORK
            | if stop { STOP_AFTER_FORK } else { 0 }
            | match boot {
                Boot::AfterSetup => 0,
                Boot::BeforeSetup => BOOT_AHEAD,
            };
        self.unanswered.set(true);
        crate::handoff::send_tagged(self.control.as_fd(), tag, &[socket])?;
        while_forking();
        let mut answer = [0; 4];
        let mut read = 0;
        while read < answer.len() {
            match rustix::io::read(&self.control, &mut answer[read..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "it ended")),
                Ok(count) => read += count,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "it did not answer"));
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.unanswered.set(false);
        let answer = i32::from_le_bytes(answer);
        match rustix::process::Pid::from_raw(answer) {
            Some(pid) if answer > 0 => Ok(pid),
            _ => Err(io::Error::from_raw_os_error(answer.saturating_neg())),
        }
    }

    /// Kills and reaps the zygote (its domains go on: they are not its children). Returns the
    /// id in the slot, if a request was not answered and it forked for it: a domain whose id
    /// it did not send (this process's child, not reaped yet, so the id is still its own).
    /// An error if the zygote cannot be reaped (it could still fork) or its slot read.
    fn stop(mut self) -> io::Result<Option<rustix::process::Pid>> {
        let _ = self.process.kill();
        self.process.wait()?;
        if !self.unanswered.get() {
            return Ok(None);
        }
        let mut slot = [0; SLOT_BYTES];
        if rustix::io::pread(&self.slot, &mut slot, 0)? != SLOT_BYTES {
            return Err(io::Error::other("cannot read the slot"));
        }
        let id = i32::from_ne_bytes(slot);
        Ok(rustix::process::Pid::from_raw(id).filter(|_| id > 0))
    }
}

/// The slot's size: a process id (`int`), in this machine's byte order, as the kernel writes it.
const SLOT_BYTES: usize = 4;

/// Runs the zygote (`nebulet domain-zygote`, with its socket to the parent as stdin) until the
/// parent closes its end; returns the exit code. In each forked copy it runs the domain
/// instead, and exits with the domain's exit code.
pub fn main() -> i32 {
    // No transparent huge pages in the zygote and the domains it forks (inherited): the
    // allocator asks for them (`MADV_HUGEPAGE`), and each thread a domain starts then took a
    // fresh 2 MiB page for its first allocations, which the kernel zeroes (about a third of a
    // small domain's runtime threads' CPU time), and copy-on-write split the zygote's.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    // What every domain would otherwise do for itself after the fork.
    crate::child::prepare();
    let network = match crate::sandbox::enter_zygote_namespaces() {
        Ok(network) => network.unwrap_or(crate::sandbox::Network::Own),
        Err(message) => {
            // The parent then executes its domains, each in namespaces of its own.
            eprintln!("nebulet domain zygote: {message}");
            return 1;
        }
    };
    let control = io::stdin();
    let slot = match crate::handoff::receive(control.as_fd()).map(<[OwnedFd; 1]>::try_from) {
        Ok(Ok([memfd])) => match fork::Slot::map(&memfd) {
            Ok(slot) => slot,
            Err(error) => {
                eprintln!("nebulet domain zygote: cannot map its slot: {error}");
                return 1;
            }
        },
        _ => {
            eprintln!("nebulet domain zygote: no slot came");
            return 1;
        }
    };
    // The allow-list and what a domain's start needs (see `sandbox::START_UP`): applied once
    // here, so each domain applies only a small filter that takes the latter away.
    let inherited = crate::sandbox::restrict_zygote();
    loop {
        let Ok((tag, descriptors)) = crate::handoff::receive_tagged(control.as_fd()) else {
            // The parent closed its end (it ended, or replaced this zygote).
            return 0;
        };
        let answer = match <[OwnedFd; 1]>::try_from(descriptors) {
            Ok([socket]) => match fork::fork_domain(socket, &slot) {
                Ok(fork::Forked::Domain) => {
                    let boot =
                        if tag & BOOT_AHEAD != 0 { Boot::BeforeSetup } else { Boot::AfterSetup };
                    fork::exit_domain(crate::child::run_in(network, inherited, boot))
                }
                Ok(fork::Forked::Zygote(pid)) => {
                    if tag & STOP_AFTER_FORK != 0 {
                        let _ = rustix::process::kill_process(
                            rustix::process::getpid(),
                            rustix::process::Signal::STOP,
                        );
                    }
                    pid.as_raw_nonzero().get()
                }
                Err(error) => -error.raw_os_error().unwrap_or(libc::EIO),
            },
            Err(_) => -libc::EINVAL,
        };
        if rustix::io::write(control.as_fd(), &answer.to_le_bytes()) != Ok(4) {
            return 1;
        }
    }
}
