//! Reading a bridge's socket: while frames come close together, the reader looks for the next
//! one for a short while before it sleeps, so that an answer does not wait for a sleeping core.
//!
//! A wake-up of a thread asleep on an idle core costs about 15 µs on this project's virtual
//! machines, more than the rest of a crossing. So after a frame that came within
//! [`SPIN_WINDOW`] of the one before, the reader does not wait for the socket's readiness: it
//! reads it again (a non-blocking `read`) each time its worker has nothing else to run, for at
//! most [`SPIN_LIMIT`]. Its looks are `tokio::task::yield_now`, which the worker runs only once
//! its other tasks have run and before it would sleep, so the spinning never holds up a task.
//! A spin that saw nothing makes the next ones wait (1, 2, 4, up to 16 frames), so a peer that
//! sends at a steady pace too slow to catch costs little. What every reader of a host process
//! spins, together, is bounded by [`Share`]: half of one worker over time. The time a reader
//! spent spinning is counted (`spun`), for the parent to charge the domain's creator.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

use crate::wire::{Outgoing, register};

/// A frame that comes within this of the one before makes the reader spin for the next.
pub(crate) const SPIN_WINDOW: Duration = Duration::from_micros(200);

/// The longest a reader spins for one frame.
pub(crate) const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// The most a gap between two looks counts as spinning: a look (a `read` and the worker's poll
/// of its driver) takes 1 to 3 µs, so a longer gap is the worker running other tasks, whose
/// time is theirs.
const LOOK_LIMIT: Duration = Duration::from_micros(20);

/// The most frames a reader lets pass without spinning after spins that saw nothing.
const MAX_BACKOFF: u32 = 16;

/// The share of one worker that the readers of this host process may spin, together, over
/// time: [`SHARE_NUMERATOR`] / [`SHARE_DENOMINATOR`], with at most [`SHARE_BURST`] saved up.
const SHARE_NUMERATOR: u32 = 1;
const SHARE_DENOMINATOR: u32 = 2;
const SHARE_BURST: Duration = Duration::from_millis(1);

/// The spinning time left to the readers of this host process: it grows at the share of one
/// worker, up to the burst, and each look takes what it spent.
#[derive(Debug)]
pub(crate) struct Share {
    state: Mutex<ShareState>,
}

#[derive(Debug)]
struct ShareState {
    /// Spinning time left.
    left: Duration,
    /// When `left` was last brought up to date.
    at: Option<Instant>,
}

impl Share {
    pub(crate) const fn new() -> Self {
        Self { state: Mutex::new(ShareState { left: SHARE_BURST, at: None }) }
    }

    /// Takes `spent` (the last look's cost) at `now`: whether any is left for another look.
    fn take(&self, now: Instant, spent: Duration) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let earned = state.at.map_or(Duration::ZERO, |at| {
            now.saturating_duration_since(at) * SHARE_NUMERATOR / SHARE_DENOMINATOR
        });
        state.at = Some(now);
        state.left = (state.left + earned).min(SHARE_BURST).saturating_sub(spent);
        !state.left.is_zero()
    }
}

/// The share of this host process (a process is either a parent or one domain).
static SHARE: Share = Share::new();

/// What a reader that found nothing to read does next.
enum Next {
    /// Lets the worker run its other tasks first, then spins (the first look of a spin: the
    /// frame it waits for may be the answer to what a task it woke is about to send).
    Yield,
    /// Reads again at once.
    Look,
    /// Waits for the socket's readiness.
    Sleep,
}

/// The reading half of a bridge's socket, spinning for the next frame while frames come close
/// together (see the module's note).
pub(crate) struct SpinningReader {
    /// The socket (non-blocking), a descriptor of its own.
    socket: Arc<OwnedFd>,
    /// Its registration with the runtime's poller, kept while the reader sleeps between frames
    /// (not while it spins: see [`register`]).
    registered: Option<AsyncFd<Arc<OwnedFd>>>,
    share: &'static Share,
    /// The time spent spinning so far, in nanoseconds.
    spun: Arc<AtomicU64>,
    /// When bytes last came.
    last_bytes: Option<Instant>,
    /// Whether the next wait for bytes may spin: the last bytes came within the window.
    close_together: bool,
    /// Reads to let pass before spinning again, after spins that saw nothing.
    skip: u32,
    /// The next `skip` after a spin that sees nothing.
    backoff: u32,
    /// The spin under way, if any: once the worker has run its other tasks, when it began and
    /// when the reader last looked.
    spin: Option<Option<(Instant, Instant)>>,
    /// The yield under way: the worker runs its other tasks first.
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl SpinningReader {
    /// Reads `socket`, a non-blocking stream socket; spinning shares this host process's share.
    fn new(socket: OwnedFd) -> Self {
        Self::with_share(socket, &SHARE)
    }

    fn with_share(socket: OwnedFd, share: &'static Share) -> Self {
        Self {
            socket: Arc::new(socket),
            registered: None,
            share,
            spun: Arc::new(AtomicU64::new(0)),
            last_bytes: None,
            close_together: false,
            skip: 0,
            backoff: 1,
            spin: None,
            yielding: None,
        }
    }

    /// The time this reader has spent spinning, in nanoseconds, as it grows.
    pub(crate) fn spun(&self) -> Arc<AtomicU64> {
        self.spun.clone()
    }

    /// Bytes came at `now`: the spin under way, if any, ends with them.
    fn came(&mut self, now: Instant) {
        if let Some(spin) = self.spin.take() {
            if let Some((_, looked)) = spin {
                self.count(now, looked);
            }
            DEBUG[1].fetch_add(1, Ordering::Relaxed);
            self.backoff = 1;
        }
        self.close_together =
            self.last_bytes.is_some_and(|last| now.saturating_duration_since(last) <= SPIN_WINDOW);
        self.last_bytes = Some(now);
        self.skip = self.skip.saturating_sub(1);
    }

    /// Counts the time from `looked` to `now` as spinning: whether the share has more.
    fn count(&mut self, now: Instant, looked: Instant) -> bool {
        let spent = now.saturating_duration_since(looked);
        self.spun.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        self.share.take(now, spent)
    }

    /// Nothing to read at `now`: what to do next.
    fn next(&mut self, now: Instant) -> Next {
        match self.spin {
            None => {
                if !self.close_together || self.skip > 0 || !self.share.take(now, Duration::ZERO) {
                    return Next::Sleep;
                }
                DEBUG[0].fetch_add(1, Ordering::Relaxed);
                self.spin = Some(None);
                Next::Yield
            }
            Some(None) => {
                self.spin = Some(Some((now, now)));
                Next::Look
            }
            Some(Some((began, looked))) => {
                let more = self.count(now, looked);
                if more && now.saturating_duration_since(began) < SPIN_LIMIT {
                    self.spin = Some(Some((began, now)));
                    return Next::Look;
                }
                // Nothing came: the next reads go by without spinning, more of them each time.
                DEBUG[2].fetch_add(1, Ordering::Relaxed);
                self.spin = None;
                self.close_together = false;
                self.skip = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Next::Sleep
            }
        }
    }
}

pub(crate) static DEBUG: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
impl Drop for SpinningReader {
    fn drop(&mut self) {
        eprintln!("spin debug {}: started {} caught {} missed {} looks {} sleeps {} spun {}", std::process::id(),
            DEBUG[0].load(Ordering::Relaxed), DEBUG[1].load(Ordering::Relaxed), DEBUG[2].load(Ordering::Relaxed), DEBUG[3].load(Ordering::Relaxed), DEBUG[4].load(Ordering::Relaxed), self.spun.load(Ordering::Relaxed));
    }
}

impl AsyncRead for SpinningReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(yielding) = &mut this.yielding {
                ready!(yielding.as_mut().poll(context));
                this.yielding = None;
            }
            match rustix::io::read(&*this.socket, buffer.initialize_unfilled()) {
                Ok(read) => {
                    buffer.advance(read);
                    if read > 0 {
                        this.came(Instant::now());
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => match this.next(Instant::now()) {
                    Next::Yield => {
                        // Unregistered while it spins, so that what arrives wakes nobody.
                        this.registered = None;
                        this.yielding = Some(Box::pin(tokio::task::yield_now()));
                    }
                    Next::Look => {
                        DEBUG[3].fetch_add(1, Ordering::Relaxed);
                        std::hint::spin_loop();
                    }
                    Next::Sleep => {
                        DEBUG[4].fetch_add(1, Ordering::Relaxed);
                        let registered = match &mut this.registered {
                            Some(registered) => registered,
                            None => this
                                .registered
                                .insert(register(&this.socket, Interest::READABLE)?),
                        };
                        // Readiness seen is cleared before the next read, so none is missed.
                        ready!(registered.poll_read_ready(context))?.clear_ready();
                    }
                },
                Err(error) => return Poll::Ready(Err(error.into())),
            }
        }
    }
}

/// Splits a bridge's socket into its reader and its sender, each with a descriptor of its own
/// and registered with the runtime's poller only while it waits (see [`register`]).
pub(crate) fn split(socket: tokio::net::UnixStream) -> io::Result<(SpinningReader, Arc<Outgoing>)> {
    let reading = OwnedFd::from(socket.into_std()?);
    let sending = reading.try_clone()?;
    Ok((SpinningReader::new(reading), Outgoing::new(sending)))
}
