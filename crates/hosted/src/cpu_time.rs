//! The CPU time of a process's run, with the thread's CPU clock read only when it matters.
//!
//! Reading an OS thread's CPU clock is a system call (0.3–1 µs on these machines, against about
//! 25 ns for the monotonic clock, which the vDSO reads), and a process runs once for every
//! message it handles: read at both ends of every run, it took a fifth of the time of a process
//! create+start+exit. So:
//! - A run that takes less than [`LONG_RUN_NS`] of wall time is charged its wall time. The OS
//!   takes a thread away for a time slice of milliseconds, so a run that short was almost
//!   never interrupted, and one that was is no longer short.
//! - A longer run is charged the thread's CPU time since a reading taken at most
//!   [`READING_AGE_NS`] before the run began, never more than its wall time. For a process whose
//!   runs have been long ([`RunLength::Long`]: it computes) that reading is taken at the start
//!   of the run, so its charge is exact.
//!
//! So time the OS takes the worker away is not charged to the process, as the kernel asks,
//! except for at most [`READING_AGE_NS`] of the worker's own time on the first long run of a
//! process whose runs were short.

use std::cell::Cell;

use nebulet_kernel::{LONG_RUN_NS, RunLength, RunStart};

/// The oldest a thread's CPU clock reading may be when a run begins.
pub(crate) const READING_AGE_NS: i64 = 1_000_000;

/// One OS thread's last reading of its CPU clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meter {
    /// (monotonic clock, CPU clock) then, in nanoseconds.
    reading: Option<(i64, i64)>,
}

impl Meter {
    /// A run begins at `wall`; reads `cpu_clock` if the run is likely long or the last reading
    /// is too old.
    pub(crate) fn started(
        &mut self,
        wall: i64,
        length: RunLength,
        cpu_clock: impl Fn() -> i64,
    ) -> RunStart {
        let stale = self.reading.is_none_or(|(at, _)| wall.saturating_sub(at) > READING_AGE_NS);
        let cpu = (length == RunLength::Long || stale).then(|| {
            let cpu = cpu_clock();
            self.reading = Some((wall, cpu));
            cpu
        });
        RunStart { wall, cpu }
    }

    /// The CPU time of the run `start` began, which ends at `wall`.
    pub(crate) fn spent(&mut self, start: RunStart, wall: i64, cpu_clock: impl Fn() -> i64) -> i64 {
        let elapsed = wall.saturating_sub(start.wall).max(0);
        if elapsed < LONG_RUN_NS && start.cpu.is_none() {
            return elapsed;
        }
        let cpu = cpu_clock();
        let since = start.cpu.or(self.reading.map(|(_, cpu)| cpu)).unwrap_or(cpu);
        self.reading = Some((wall, cpu));
        cpu.saturating_sub(since).clamp(0, elapsed)
    }
}

thread_local! {
    static METER: Cell<Meter> = const { Cell::new(Meter { reading: None }) };
}

/// Runs `use_meter` on this thread's meter.
fn with_meter<T>(use_meter: impl FnOnce(&mut Meter) -> T) -> T {
    METER.with(|cell| {
        let mut meter = cell.get();
        let result = use_meter(&mut meter);
        cell.set(meter);
        result
    })
}

/// [`Meter::started`] on this thread's meter.
pub(crate) fn run_started(wall: i64, length: RunLength, cpu_clock: impl Fn() -> i64) -> RunStart {
    with_meter(|meter| meter.started(wall, length, cpu_clock))
}

/// [`Meter::spent`] on this thread's meter.
pub(crate) fn run_cpu_time(start: RunStart, wall: i64, cpu_clock: impl Fn() -> i64) -> i64 {
    with_meter(|meter| meter.spent(start, wall, cpu_clock))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A CPU clock that counts its readings.
    struct Clock {
        now: Cell<i64>,
        reads: Cell<u32>,
    }

    impl Clock {
        fn new(now: i64) -> Self {
            Self { now: Cell::new(now), reads: Cell::new(0) }
        }

        fn read(&self) -> i64 {
            self.reads.set(self.reads.get() + 1);
            self.now.get()
        }
    }

    #[test]
    fn short_runs_are_charged_their_wall_time_without_reading_the_cpu_clock() {
        let clock = Clock::new(1_000);
        let mut meter = Meter::default();
        // The first run reads the clock (no reading yet); the next ones do not.
        let start = meter.started(0, RunLength::Short, || clock.read());
        clock.now.set(1_000 + 3_000);
        assert_eq!(meter.spent(start, 3_000, || clock.read()), 3_000);
        let reads = clock.reads.get();
        for run in 1..100 {
            let wall = run * 10_000;
            let start = meter.started(wall, RunLength::Short, || clock.read());
            assert_eq!(meter.spent(start, wall + 2_000, || clock.read()), 2_000);
        }
        assert_eq!(clock.reads.get(), reads, "no CPU clock reading within a millisecond");
        // A millisecond on, the reading is refreshed at the start of a run.
        let start = meter.started(2_000_000, RunLength::Short, || clock.read());
        assert_eq!(start.cpu, Some(clock.now.get()));
    }

    #[test]
    fn a_long_run_is_charged_cpu_time_not_time_the_os_took_away() {
        let clock = Clock::new(50_000);
        let mut meter = Meter::default();
        let start = meter.started(0, RunLength::Long, || clock.read());
        // 10 ms of wall time, of which the thread ran 300 µs.
        clock.now.set(50_000 + 300_000);
        assert_eq!(meter.spent(start, 10_000_000, || clock.read()), 300_000);
    }

    #[test]
    fn an_unexpected_long_run_is_charged_from_the_last_reading_at_most_its_wall_time() {
        let clock = Clock::new(0);
        let mut meter = Meter::default();
        let first = meter.started(0, RunLength::Short, || clock.read());
        clock.now.set(10_000);
        assert_eq!(meter.spent(first, 10_000, || clock.read()), 10_000);
        // A short-looking run at 0.5 ms (no reading at its start) that takes 5 ms of wall
        // time, of which the thread ran 200 µs (and 20 µs before it, since the reading).
        let start = meter.started(500_000, RunLength::Short, || clock.read());
        assert_eq!(start.cpu, None);
        clock.now.set(230_000);
        assert_eq!(meter.spent(start, 5_500_000, || clock.read()), 220_000);
        // Never more than the run's wall time.
        let start = meter.started(5_600_000, RunLength::Short, || clock.read());
        clock.now.set(10_000_000);
        let spent = meter.spent(start, 5_600_000 + 60_000, || clock.read());
        assert!(spent <= 60_000, "{spent}");
    }
}
