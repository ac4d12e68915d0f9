//! The spare domain: one forked ahead by the zygote, its kernel booted (`Boot::BeforeSetup`),
//! waiting for its setup, so that the next start of a program without preopened directories
//! begins where a domain's start is half done.
//!
//! A process keeps at most one spare, and only once it has started two domains that could have
//! taken one (so a `nebulet run --isolate` never makes one it does not use). Each start that
//! takes it forks the next in the background. A spare has run no guest code: it holds its
//! sandbox but for its last seccomp filter, which it applies once its setup came, as every
//! domain does, and it serves that one domain only. While it waits it uses no CPU time; what it
//! used to boot is its host process's, charged to the creator of the domain it becomes. It
//! ends, quietly, when its socket closes: when this process drops it or ends.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use crate::host_process::HostProcess;
use crate::zygote::{Handover, Started};

/// A domain waiting for its setup.
#[derive(Debug)]
struct Spare {
    executable: PathBuf,
    host: HostProcess,
    socket: OwnedFd,
}

/// This process's spare, if one is ready. Held while one is forked, so that a start that wants
/// it waits for it rather than forking another.
static SPARE: Mutex<Option<Spare>> = Mutex::new(None);

/// The starts so far that could have taken a spare.
static STARTS: AtomicU64 = AtomicU64::new(0);

/// The spare's id, if one is ready (for tests: it is this process's child too).
pub fn spare_id() -> Option<u32> {
    SPARE.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|spare| spare.host.id())
}

/// Counts a start that could take a spare: whether one should be forked for the next, once
/// this one has its host process ([`refill`]).
pub(crate) fn count_start() -> bool {
    STARTS.fetch_add(1, Ordering::Relaxed) >= 1
}

/// Takes the spare of `executable`, if one is ready, and hands it what it reads first
/// (`handover`, see `zygote::start`): `None` if there is none, or it cannot take its handover
/// (it ended meanwhile: it is dropped). While one is forked, waits for it (blocking).
pub(crate) fn take(executable: &Path, handover: Handover<'_>) -> Option<Started> {
    let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take();
    hand_over(spare, executable, handover)
}

/// [`take`] without waiting (it does not block): `None` also while one is forked.
pub(crate) fn take_if_ready(executable: &Path, handover: Handover<'_>) -> Option<Started> {
    let spare = match SPARE.try_lock() {
        Ok(mut spare) => spare.take(),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
        Err(TryLockError::WouldBlock) => None,
    };
    hand_over(spare, executable, handover)
}

/// Hands `spare`, if it is of `executable`, what it reads first.
fn hand_over(spare: Option<Spare>, executable: &Path, handover: Handover<'_>) -> Option<Started> {
    let spare = spare.filter(|spare| spare.executable == executable)?;
    let handed = handover(spare.socket.as_fd()).ok()?;
    Some((spare.host, spare.socket, Ok(handed)))
}

/// Forks a spare of `executable` if none is ready (blocking, for about as long as a fork).
pub(crate) fn refill(executable: &Path) {
    let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
    if spare.is_some() {
        return;
    }
    match crate::zygote::fork_spare(executable) {
        Ok((host, socket)) => {
            *spare = Some(Spare { executable: executable.to_path_buf(), host, socket });
        }
        Err(error) => tracing::debug!("no spare domain: {error}"),
    }
}
