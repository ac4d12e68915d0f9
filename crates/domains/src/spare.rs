//! The spare domains: forked ahead by the zygote, their kernels booted (`Boot::BeforeSetup`),
//! waiting for their setup, so that the next start of a program without preopened directories
//! begins where a domain's start is half done.
//!
//! A process keeps at most two spares, and only once it has started two domains that could have
//! taken one (so a `nebulet run --isolate` never makes one it does not use). A start takes the
//! oldest. If that leaves none ready, the next is forked at once, in the background; if one is
//! still ready, the taken one is replaced only once the domain it became has ended, so that
//! forking and booting its replacement does not slow that domain (a start after a pause:
//! 0.59 to 0.69 ms against 0.78 to 0.89 with one spare replaced at once, on 2026-12-02), and a
//! start right after it still finds one ready. A spare has run no guest code: it holds its
//! sandbox but for its last seccomp filter, which it applies once its setup came, as every
//! domain does, and it serves that one domain only. While it waits it uses no CPU time; what it
//! used to boot is its host process's, charged to the creator of the domain it becomes. It
//! ends, quietly, when its socket closes: when this process drops it or ends.

use std::collections::VecDeque;
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

/// The most spares a process keeps ready (see the module's doc).
const KEPT: usize = 2;

/// This process's spares that are ready, the oldest first. Held while one is forked, so that a
/// start that wants one waits for it rather than forking another.
static SPARES: Mutex<VecDeque<Spare>> = Mutex::new(VecDeque::new());

/// The starts so far that could have taken a spare.
static STARTS: AtomicU64 = AtomicU64::new(0);

/// The id of the spare the next start takes, if one is ready (for tests: it is this process's
/// child too).
pub fn spare_id() -> Option<u32> {
    spares().front().map(|spare| spare.host.id())
}

/// The ids of the spares that are ready, the next one to be taken first (for tests).
pub fn spare_ids() -> Vec<u32> {
    spares().iter().map(|spare| spare.host.id()).collect()
}

fn spares() -> std::sync::MutexGuard<'static, VecDeque<Spare>> {
    SPARES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether, after a start took a spare, another is ready or on its way (a fork runs, which
/// forks until [`KEPT`] are ready): then the one taken is replaced only once the domain it
/// became has ended, since forking and booting one beside that domain would slow it. Does not
/// wait for a fork.
pub(crate) fn another_is_coming() -> bool {
    match SPARES.try_lock() {
        Ok(spares) => !spares.is_empty(),
        Err(TryLockError::Poisoned(poisoned)) => !poisoned.into_inner().is_empty(),
        Err(TryLockError::WouldBlock) => true,
    }
}

/// [`refill`] on a blocking thread of the current runtime.
pub(crate) fn refill_in_background(executable: PathBuf) {
    tokio::task::spawn_blocking(move || refill(&executable));
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
    hand_over(next(&mut spares(), executable), handover)
}

/// [`take`] without waiting (it does not block): `None` also while one is forked.
pub(crate) fn take_if_ready(executable: &Path, handover: Handover<'_>) -> Option<Started> {
    let spare = match SPARES.try_lock() {
        Ok(mut spares) => next(&mut spares, executable),
        Err(TryLockError::Poisoned(poisoned)) => next(&mut poisoned.into_inner(), executable),
        Err(TryLockError::WouldBlock) => None,
    };
    hand_over(spare, handover)
}

/// The oldest of `spares`, once those of another executable are dropped.
fn next(spares: &mut VecDeque<Spare>, executable: &Path) -> Option<Spare> {
    spares.retain(|spare| spare.executable == executable);
    spares.pop_front()
}

/// Hands `spare` what it reads first.
fn hand_over(spare: Option<Spare>, handover: Handover<'_>) -> Option<Started> {
    let spare = spare?;
    let handed = handover(spare.socket.as_fd()).ok()?;
    Some((spare.host, spare.socket, Ok(handed)))
}

/// Forks spares of `executable` until [`KEPT`] are ready (blocking, for about as long as a fork
/// each).
pub(crate) fn refill(executable: &Path) {
    let mut spares = spares();
    while spares.len() < KEPT {
        match crate::zygote::fork_spare(executable) {
            Ok((host, socket)) => {
                spares.push_back(Spare { executable: executable.to_path_buf(), host, socket });
            }
            Err(error) => {
                tracing::debug!("no spare domain: {error}");
                return;
            }
        }
    }
}
