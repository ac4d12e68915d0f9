//! A domain's host process as its parent holds it: its id and a pidfd, to signal it and wait for
//! it without racing a reused id (it is this process's own child, reaped only here).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A child process of this one, killed and reaped when dropped if it was not waited for.
#[derive(Debug)]
pub(crate) struct HostProcess {
    pid: Pid,
    /// `None` once reaped (or handed to the reaper on drop). It reads ready once the process
    /// has ended, which the runtime's poller sees: a running domain holds no thread.
    pidfd: Option<OwnedFd>,
}

/// How a host process ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    /// Its exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
}

impl Ended {
    /// It exited with code 0.
    pub(crate) fn success(self) -> bool {
        self.code == Some(0)
    }
}

impl HostProcess {
    /// Holds child `pid` of this process (not reaped yet, so its id is still its own). The
    /// child is killed if it cannot be held.
    pub(crate) fn adopt(pid: Pid) -> io::Result<Self> {
        match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => Ok(Self { pid, pidfd: Some(pidfd) }),
            Err(error) => {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                Err(error.into())
            }
        }
    }

    /// [`HostProcess::adopt`], checking first that `pid` is this process's child (running, or
    /// ended and not reaped): for an id not learnt from the process that made the child.
    pub(crate) fn adopt_child(pid: Pid) -> io::Result<Self> {
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())?;
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        // `ECHILD` for a process that is not this one's child.
        rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options)?;
        Ok(Self { pid, pidfd: Some(pidfd) })
    }

    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// Kills it (a no-op once it ended).
    pub(crate) fn kill(&self) {
        if let Some(pidfd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(pidfd.as_fd(), Signal::KILL);
        }
    }

    /// Waits until it has ended, without reaping it: `/proc/PID` still shows its totals.
    /// `false` if that cannot be known.
    pub(crate) async fn ended(&self) -> bool {
        let Some(pidfd) = &self.pidfd else { return false };
        exited(pidfd).await.is_ok()
            && wait(pidfd, WaitIdOptions::EXITED | WaitIdOptions::NOWAIT).is_ok()
    }

    /// Waits until it has ended, and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<Ended> {
        let pidfd = self.pidfd.take().ok_or_else(|| io::Error::other("reaped already"))?;
        exited(&pidfd).await?;
        let status = wait(&pidfd, WaitIdOptions::EXITED)?;
        Ok(Ended { code: status.exit_status(), signal: status.terminating_signal() })
    }
}

/// Returns once the process behind `pidfd` has ended (its pidfd reads ready); must be awaited
/// within a tokio runtime.
async fn exited(pidfd: &OwnedFd) -> io::Result<()> {
    #[expect(
        deprecated,
        reason = "sound for an OwnedFd, whose descriptor is its own and never changes (what the \
                  replacement, `unsafe` `register_with_interest`, asks the caller to promise)"
    )]
    let watched = AsyncFd::with_interest(pidfd.try_clone()?, Interest::READABLE)?;
    let _ready = watched.readable().await?;
    Ok(())
}

/// Waits for the child behind `pidfd` to end (`options`: reaping it or not).
fn wait(pidfd: &OwnedFd, options: WaitIdOptions) -> io::Result<WaitIdStatus> {
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), options) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(Some(status)) => return Ok(status),
            Ok(None) => return Err(io::Error::other("no status")),
            Err(error) => return Err(error.into()),
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else { return };
        let _ = rustix::process::pidfd_send_signal(pidfd.as_fd(), Signal::KILL);
        // Reaped once it has ended, in the background where there is a runtime (a killed
        // process ends at once).
        let reap = move || {
            let _ = wait(&pidfd, WaitIdOptions::EXITED);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(reap)),
            Err(_) => reap(),
        }
    }
}
