//! Reading a bridge's socket: while frames come close together, the reader spins for the next
//! one a short while before it sleeps, so that an answer does not wait for a sleeping core.
//!
//! Waking a thread asleep on an idle core costs about 15 µs on this project's virtual machines,
//! more than the rest of a crossing. So when bytes came within [`SPIN_WINDOW`] of the ones
//! before and the socket has nothing more, the reader does not wait for its readiness:
//! - it first yields (`tokio::task::yield_now`, which the worker runs only once its other tasks
//!   have run and before it would sleep): the frame it waits for is usually the answer to what
//!   a task it just woke is about to send;
//! - then it reads the socket again and again (non-blocking `read`s), in place, for at most
//!   [`SPIN_LIMIT`] from the first of them, holding its worker: tasks woken meanwhile by other
//!   threads go to the other workers, as while a process runs (an epoch tick is 250 µs);
//! - then it sleeps until the socket is readable. A spin that saw nothing lets the next reads
//!   go by without spinning (1, then 2, 4, up to [`MAX_BACKOFF`]), so a peer that sends at a
//!   steady pace too slow to catch costs little.
//!
//! While it spins, the socket is not registered with the runtime's poller, so that what
//! arrives wakes no worker asleep in it (see `wire::register`). The readers of one host process
//! spin, together, at most half of one worker's time ([`Share`]). The time a reader spins (from
//! its first read in place to the bytes or the end of the spin, the yield not included) is
//! counted in `spun`: the parent charges it to the domain's creator with the domain's own CPU
//! time; a domain's own spinning is its host process's CPU time, counted already.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

use crate::wire::{Outgoing, register};

/// Bytes that come within this of the ones before make the reader spin for the next.
const SPIN_WINDOW: Duration = Duration::from_micros(200);

/// The longest a reader spins in place for the next bytes.
const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// The most reads a reader lets go by without spinning after spins that saw nothing.
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

    /// Takes `spent` (spinning just done) at `now`: whether any is left for more.
    fn take(&self, now: Instant, spent: Duration) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Readers on other threads may bring a `now` a little older than the last one.
        let earned = state.at.map_or(Duration::ZERO, |at| {
            now.saturating_duration_since(at) * SHARE_NUMERATOR / SHARE_DENOMINATOR
        });
        state.at = state.at.max(Some(now));
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

/// Where a reader is in its spin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spin {
    /// Not spinning.
    Off,
    /// Yielded, to spin once the worker has run its other tasks.
    Yielded,
    /// Spinning in place since `began`; it last read the socket at `looked`.
    InPlace { began: Instant, looked: Instant },
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
    /// The spin under way, if any.
    spin: Spin,
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
            spin: Spin::Off,
            yielding: None,
        }
    }

    /// The time this reader has spent spinning, in nanoseconds, as it grows.
    pub(crate) fn spun(&self) -> Arc<AtomicU64> {
        self.spun.clone()
    }

    /// Bytes came at `now`: the spin under way, if any, ends with them.
    fn came(&mut self, now: Instant) {
        match std::mem::replace(&mut self.spin, Spin::Off) {
            Spin::Off => {}
            Spin::Yielded => self.backoff = 1,
            Spin::InPlace { looked, .. } => {
                self.count(now, looked);
                self.backoff = 1;
            }
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
            Spin::Off => {
                if !self.close_together || self.skip > 0 || !self.share.take(now, Duration::ZERO) {
                    return Next::Sleep;
                }
                self.spin = Spin::Yielded;
                Next::Yield
            }
            Spin::Yielded => {
                self.spin = Spin::InPlace { began: now, looked: now };
                Next::Look
            }
            Spin::InPlace { began, looked } => {
                let more = self.count(now, looked);
                if more && now.saturating_duration_since(began) < SPIN_LIMIT {
                    self.spin = Spin::InPlace { began, looked: now };
                    return Next::Look;
                }
                // Nothing came: the next waits go by without spinning, more of them each time
                // (the bytes that end this one count as one).
                self.spin = Spin::Off;
                self.close_together = false;
                self.skip = self.backoff + 1;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Next::Sleep
            }
        }
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
                        std::hint::spin_loop();
                    }
                    Next::Sleep => {
                        let registered = match &mut this.registered {
                            Some(registered) => registered,
                            None => {
                                this.registered.insert(register(&this.socket, Interest::READABLE)?)
                            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const MICROSECOND: Duration = Duration::from_micros(1);

    /// A reader of one end of a new socket pair (the other end returned), spinning with `share`.
    fn reader(share: &'static Share) -> (SpinningReader, std::os::unix::net::UnixStream) {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        mine.set_nonblocking(true).unwrap();
        (SpinningReader::with_share(OwnedFd::from(mine), share), theirs)
    }

    #[test]
    fn the_share_grows_at_half_the_time_passed_up_to_a_millisecond() {
        let share = Share::new();
        let start = Instant::now();
        assert!(!share.take(start, SHARE_BURST), "a millisecond at first, no more");
        assert!(share.take(start + SHARE_BURST, Duration::ZERO), "half a millisecond earned");
        assert!(!share.take(start + SHARE_BURST, SHARE_BURST / 2));
        let much_later = start + 100 * SHARE_BURST;
        assert!(share.take(much_later, SHARE_BURST - MICROSECOND));
        assert!(!share.take(much_later, MICROSECOND), "no more than a millisecond saved up");
    }

    #[test]
    fn a_reader_spins_only_for_bytes_that_come_close_together_and_at_most_the_limit() {
        static SHARE: Share = Share::new();
        let (mut reader, _other) = reader(&SHARE);
        let start = Instant::now();
        reader.came(start);
        assert!(matches!(reader.next(start + MICROSECOND), Next::Sleep), "the first bytes");
        reader.came(start + SPIN_WINDOW + MICROSECOND);
        assert!(matches!(reader.next(start + 2 * SPIN_WINDOW), Next::Sleep), "too far apart");
        let close = start + 2 * SPIN_WINDOW;
        reader.came(close);
        assert!(matches!(reader.next(close + MICROSECOND), Next::Yield));
        let began = close + 3 * MICROSECOND;
        assert!(matches!(reader.next(began), Next::Look));
        assert!(matches!(reader.next(began + SPIN_LIMIT - MICROSECOND), Next::Look));
        assert!(matches!(reader.next(began + SPIN_LIMIT), Next::Sleep), "the limit");
        assert_eq!(reader.spun.load(Ordering::Relaxed), SPIN_LIMIT.as_nanos() as u64);
        // A spin that saw nothing: the next wait sleeps, then the one after spins again.
        let mut now = began + SPIN_LIMIT + MICROSECOND;
        reader.came(now);
        assert!(matches!(reader.next(now), Next::Sleep), "after a miss");
        now += MICROSECOND;
        reader.came(now);
        assert!(matches!(reader.next(now), Next::Yield));
    }

    #[test]
    fn a_spin_counts_its_time_in_place_and_not_its_yield() {
        static SHARE: Share = Share::new();
        let (mut reader, _other) = reader(&SHARE);
        let start = Instant::now();
        reader.came(start);
        reader.came(start + 10 * MICROSECOND);
        assert!(matches!(reader.next(start + 20 * MICROSECOND), Next::Yield));
        // The worker ran other tasks for 20 µs: theirs.
        assert!(matches!(reader.next(start + 40 * MICROSECOND), Next::Look));
        assert!(matches!(reader.next(start + 45 * MICROSECOND), Next::Look));
        reader.came(start + 48 * MICROSECOND);
        assert_eq!(reader.spun.load(Ordering::Relaxed), 8_000);
    }

    #[test]
    fn the_readers_of_a_process_spin_at_most_their_share() {
        static SHARE: Share = Share::new();
        let (mut first, _one) = reader(&SHARE);
        let (mut second, _two) = reader(&SHARE);
        let start = Instant::now();
        let mut now = start;
        let mut refused = false;
        // Two readers each catch bytes after 45 µs in place, every 50 µs: more than the share.
        for _ in 0..200 {
            for reader in [&mut first, &mut second] {
                reader.came(now);
                if !matches!(reader.next(now + MICROSECOND), Next::Yield) {
                    refused = true;
                    continue;
                }
                assert!(matches!(reader.next(now + 2 * MICROSECOND), Next::Look));
                let mut looked = now + 2 * MICROSECOND;
                while looked < now + 47 * MICROSECOND {
                    looked += MICROSECOND;
                    if !matches!(reader.next(looked), Next::Look) {
                        refused = true;
                        break;
                    }
                }
                reader.came(now + 47 * MICROSECOND);
            }
            now += 50 * MICROSECOND;
        }
        assert!(refused, "the share ran out");
        let spun = first.spun.load(Ordering::Relaxed) + second.spun.load(Ordering::Relaxed);
        let bound = SHARE_BURST + (now - start) / 2 + SPIN_LIMIT;
        assert!(spun <= bound.as_nanos() as u64, "{spun} ns spun, more than {bound:?}");
    }

    #[test]
    fn a_spinning_reader_reads_every_frame_and_then_the_end() {
        static SHARE: Share = Share::new();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (reader, theirs) = reader(&SHARE);
        let count = 2_000_u32;
        let read = runtime.spawn(async move {
            let mut reader = tokio::io::BufReader::new(reader);
            let mut bodies = Vec::new();
            while let Some(body) = crate::wire::read_body(&mut reader, 64).await.unwrap() {
                bodies.push(crate::wire::decode::<u32>(&body).unwrap());
            }
            bodies
        });
        runtime.block_on(async move {
            theirs.set_nonblocking(true).unwrap();
            let mut theirs = tokio::net::UnixStream::from_std(theirs).unwrap();
            for index in 0..count {
                theirs.write_all(&crate::wire::encode(&index)).await.unwrap();
                if index % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let bodies = runtime.block_on(read).unwrap();
        assert_eq!(bodies, (0..count).collect::<Vec<_>>());
    }
}
