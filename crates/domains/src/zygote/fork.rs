//! The zygote's one fork: a copy of the (single-threaded) zygote that is its parent's child,
//! with only the new domain's socket open, whose id the kernel writes into the parent's slot
//! before it runs. The only `unsafe` code of this crate.
//!
//! Written by hand (`clone` through `libc::syscall`): neither std nor rustix offers a fork with
//! `CLONE_PARENT` (std's `Command` always execs; rustix's `kernel_fork` takes no flags). It is
//! what Chrome's zygote does (`base::ForkWithFlags`).
#![expect(
    unsafe_code,
    reason = "fork with CLONE_PARENT has no safe wrapper; sound here because the zygote is single-threaded"
)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// The parent's slot (a memfd the parent holds, see `zygote.rs`), mapped shared: the kernel's
/// `CLONE_PARENT_SETTID` writes each new domain's process id into it as part of the fork,
/// before the domain runs and before the fork returns, so the parent learns it even if this
/// zygote dies at once.
pub(super) struct Slot {
    address: std::ptr::NonNull<libc::c_int>,
}

impl Slot {
    /// Maps the first bytes of `memfd` (at least 4 long), shared.
    pub(super) fn map(memfd: &OwnedFd) -> io::Result<Self> {
        // SAFETY: a new shared mapping of 4 bytes of the memfd, at an address the kernel
        // chooses: it aliases no Rust object. Only the kernel writes it (`clone`), and this
        // process never reads it.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<libc::c_int>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let address = std::ptr::NonNull::new(address.cast::<libc::c_int>())
            .ok_or_else(|| io::Error::other("mmap gave a null address"))?;
        Ok(Self { address })
    }
}

/// Which side of the fork this is.
pub(super) enum Forked {
    /// The zygote: the new domain's host process id.
    Zygote(rustix::process::Pid),
    /// The new domain's host process, whose stdin is now the domain's socket and which has no
    /// other descriptor but stdout and stderr (or which has ended, if it could not be so).
    Domain,
}

/// Forks the calling process, which must be single-threaded, so that the copy is a child of the
/// caller's parent (`CLONE_PARENT`): the process that asked for the domain waits for it, sees
/// how it ended (a SIGSYS of its seccomp policy) and reads its `/proc` entry, as for a process
/// it spawned itself. In the copy, `socket` becomes stdin and every descriptor above stderr is
/// closed (a fork copies descriptors whatever their close-on-exec flag), and `slot` is unmapped.
/// The kernel writes the copy's process id into `slot` (`CLONE_PARENT_SETTID`) before the copy
/// runs: as the zygote is in its parent's process-id namespace (it makes none), it is the id
/// the parent knows the copy by.
pub(super) fn fork_domain(socket: OwnedFd, slot: &Slot) -> io::Result<Forked> {
    let flags = (libc::CLONE_PARENT | libc::CLONE_PARENT_SETTID) as libc::c_ulong;
    // SAFETY: `clone` without `CLONE_VM` is `fork`: the child gets a copy of the address space
    // and continues on its copy of this stack (a null stack pointer). The zygote has one
    // thread, so no lock is held by a thread the copy lacks; glibc's fork handlers are not run,
    // and nothing here registered one. The exit signal is the zygote's own (SIGCHLD), as
    // `CLONE_PARENT` makes it. glibc's record of the main thread's id stays the zygote's (only
    // its `fork` updates it): `raise` and `pthread_kill` of this thread use it, and fail, but the
    // domain's seccomp policy allows no signal calls anyway; Rust's locks use their own ids.
    // The third argument (the parent's tid pointer on both x86_64 and aarch64) is the slot, a
    // live shared mapping of 4 bytes.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            slot.address.as_ptr(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match result {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // This copy is the domain now: if it cannot become one, it ends (its parent then
            // sees a domain that exited with code 1), and never acts as the zygote.
            if let Err(error) = become_domain(socket, slot) {
                eprintln!("nebulet domain: cannot take its socket: {error}");
                std::process::exit(1);
            }
            Ok(Forked::Domain)
        }
        pid => {
            let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
            let pid = pid.ok_or_else(|| io::Error::other("clone gave no process id"))?;
            Ok(Forked::Zygote(pid))
        }
    }
}

/// In the forked copy: `slot` is unmapped (a domain must not write the next domain's id),
/// `socket` becomes stdin, and every descriptor from 3 on is closed.
fn become_domain(socket: OwnedFd, slot: &Slot) -> io::Result<()> {
    // SAFETY: unmaps this copy's view of the slot, which nothing in it refers to but `slot`,
    // never used on this side again.
    let unmapped = unsafe { libc::munmap(slot.address.as_ptr().cast(), size_of::<libc::c_int>()) };
    if unmapped != 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::stdio::dup2_stdin(&socket)?;
    drop(socket);
    // SAFETY: closes every descriptor from 3 on. This copy owns none of them: what the zygote's
    // code held there (the socket it received, closed above) is never used on this side, which
    // goes on to run the domain with stdio only.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends the forked copy (a domain that has run) with `code`, as a fork's child should: without
/// the zygote's exit handlers (mimalloc's, which collected and purged its arenas: about 7 % of
/// a small domain's CPU time, for memory the exit frees anyway). The domain flushed its output
/// before (`child::run`).
pub(super) fn exit_domain(code: i32) -> ! {
    // SAFETY: `_exit` ends the process at once; nothing in this process needs to run after it
    // (its runtime's threads end with it, and stdout was flushed).
    unsafe { libc::_exit(code) }
}
