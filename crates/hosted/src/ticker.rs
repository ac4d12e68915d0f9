//! The epoch ticker: a thread that advances the engine's epoch every [`EPOCH_INTERVAL`], so that
//! running processes yield, and that sleeps while every worker of the executor is parked.
//!
//! An epoch only matters to wasm code that runs, and wasm runs only inside a worker's poll of a
//! process: with every worker parked, a tick would wake the host 4,000 times a second for
//! nothing. The runtime's park hooks count the parked workers; the ticker parks once all are,
//! and the first worker to unpark wakes it, before it polls anything. A worker's park and
//! unpark are already system calls, so the hooks' two atomic operations cost nothing that
//! counts, and a busy worker never parks.
//!
//! An emulator may have its epoch advanced instead by the thread that blocks on its main future
//! ([`Ticker::tick_until`]): a domain's kernel does, to start one thread fewer.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::Instant;

use crate::EPOCH_INTERVAL;

/// What the ticker and the executor's park hooks share.
#[derive(Debug)]
pub(crate) struct Ticker {
    workers: usize,
    parked_workers: AtomicUsize,
    /// Set while the ticker is parked or about to park.
    asleep: AtomicBool,
    stop: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

impl Ticker {
    /// A ticker for an executor of `workers` workers (not started yet: see [`Self::start`]).
    pub(crate) fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            workers,
            parked_workers: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        })
    }

    /// The executor's hook before a worker parks.
    pub(crate) fn worker_parks(&self) {
        self.parked_workers.fetch_add(1, Ordering::SeqCst);
    }

    /// The executor's hook after a worker unparks: wakes the ticker if it sleeps.
    pub(crate) fn worker_unparks(&self) {
        self.parked_workers.fetch_sub(1, Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Starts the ticker's thread, advancing `engine`'s epoch.
    pub(crate) fn start(
        self: &Arc<Self>,
        engine: wasmtime::Engine,
    ) -> std::io::Result<JoinHandle<()>> {
        let ticker = self.clone();
        std::thread::Builder::new().name("nebulet-epoch".into()).spawn(move || ticker.run(&engine))
    }

    /// Advances `engine`'s epoch on the calling thread, as the ticker's thread would, while it
    /// polls `future` (within the runtime's context) until it completes: the thread polls it
    /// whenever it is woken, and ticks in between. The first thread to call this is the
    /// ticker's for good; another thread's call only polls (it waits for wakes, and ticks
    /// nothing).
    pub(crate) fn tick_until<F: Future>(&self, engine: &wasmtime::Engine, future: F) -> F::Output {
        let current = std::thread::current();
        let ticks = self.thread.get_or_init(|| current.clone()).id() == current.id();
        let woken = Arc::new(Woken { thread: current, woken: AtomicBool::new(true) });
        let waker = Waker::from(woken.clone());
        let mut context = Context::from_waker(&waker);
        let mut future = pin!(future);
        let mut next_tick = Instant::now() + EPOCH_INTERVAL;
        loop {
            if woken.woken.swap(false, Ordering::SeqCst)
                && let Poll::Ready(output) = future.as_mut().poll(&mut context)
            {
                return output;
            }
            if !ticks {
                std::thread::park();
                continue;
            }
            let now = Instant::now();
            if now < next_tick {
                std::thread::park_timeout(next_tick - now);
                continue;
            }
            engine.increment_epoch();
            // A wake of `future` wakes this thread too, which then polls it.
            self.sleep_while_all_parked(|| woken.woken.load(Ordering::SeqCst));
            next_tick = Instant::now() + EPOCH_INTERVAL;
        }
    }

    /// Stops the thread at its next tick (at once if it sleeps).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether the ticker sleeps now (for tests).
    #[cfg(test)]
    pub(crate) fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn all_parked(&self) -> bool {
        self.parked_workers.load(Ordering::SeqCst) >= self.workers
    }

    fn run(&self, engine: &wasmtime::Engine) {
        // Known before it can first sleep, so that every wake reaches it.
        let _ = self.thread.set(std::thread::current());
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(EPOCH_INTERVAL);
            engine.increment_epoch();
            self.sleep_while_all_parked(|| self.stop.load(Ordering::SeqCst));
        }
    }

    /// Sleeps while every worker is parked (no wasm can run, so no tick is needed), unless
    /// `awake()` says there is something to do. Announced before the second look: a worker that
    /// unparks after it sees the announcement and wakes this thread (an unpark before the park
    /// is kept).
    fn sleep_while_all_parked(&self, awake: impl Fn() -> bool) {
        if self.all_parked() {
            self.asleep.store(true, Ordering::SeqCst);
            if self.all_parked() && !awake() {
                std::thread::park();
            }
            self.asleep.store(false, Ordering::SeqCst);
        }
    }
}

/// The waker of the future [`Ticker::tick_until`] polls: it marks the future woken and unparks
/// the ticking thread.
struct Woken {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use nebulet_abi::{ExitReason, Limit};
    use nebulet_kernel::ProcessOptions;

    use crate::{Console, Emulator, EngineOptions, ExitStatus, PreparedKernel};

    /// Starts a spinner without calls, which yields only at ticks, with a CPU limit of 20 ms;
    /// its end, or a timeout after 60 s.
    fn spinner_stopped(
        emulator: &Emulator,
    ) -> impl Future<Output = Result<ExitStatus, tokio::time::error::Elapsed>> + use<> {
        let module = emulator.compile(br#"(module (func (export "_start") (loop (br 0))))"#);
        let options = ProcessOptions { name: "spinner".into(), ..Default::default() };
        let limits = [(Limit::CpuNanoseconds, 20_000_000)];
        let spinner =
            emulator.kernel().spawn_with_limits(module.unwrap(), options, &limits, None).unwrap();
        async move { tokio::time::timeout(Duration::from_secs(60), spinner.wait()).await }
    }

    #[test]
    fn the_ticker_sleeps_while_every_worker_does_and_wakes_for_a_spinner() {
        let emulator = Emulator::new(Console::Buffer(Default::default())).unwrap();
        // Nothing runs: every worker parks, and then the ticker must sleep too.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !emulator.ticker.is_asleep() {
            assert!(Instant::now() < deadline, "the ticker of an idle emulator never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Its CPU limit ends it only if the ticker woke up.
        let waited = emulator.runtime().block_on(spinner_stopped(&emulator));
        let status = waited.expect("the spinner was never stopped: no tick reached it");
        assert_eq!(status.reason, ExitReason::OutOfResources, "{:?}", status.message);
    }

    #[test]
    fn a_prepared_emulator_has_one_worker_and_no_ticker_thread_and_stops_a_spinner() {
        let options = EngineOptions::default();
        let prepared = PreparedKernel::new(&options).unwrap();
        let console = Console::Buffer(Default::default());
        let emulator = Emulator::with_prepared(console, &options, &prepared).unwrap();
        assert!(emulator.ticker_thread.is_none());
        assert_eq!(emulator.runtime().metrics().num_workers(), 1);
        // Its CPU limit ends it only if the thread in `block_on` ticked.
        let status = emulator.block_on(spinner_stopped(&emulator));
        let status = status.expect("the spinner was never stopped: no tick");
        assert_eq!(status.reason, ExitReason::OutOfResources, "{:?}", status.message);
    }
}
