//! Threads of a process: coroutines that the process's one task schedules.
//!
//! Every thread is a wasm call on its own wasmtime store (its own instance on the process's
//! shared memory). The process task polls them in turn; a thread gives up the CPU only when it
//! blocks, when the epoch ticks (wasmtime then yields, waking the thread again at once), or when
//! it calls `thread_yield`. Since only one thread of a process runs at any moment, the process's
//! tables need no more than the uncontended locks Rust asks for.
//!
//! `sched_lock` makes the scheduler poll only the lock holder while that thread is runnable: it
//! still yields to the executor at epoch ticks (other processes run), but no other thread of its
//! process runs until it unlocks or blocks.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use crate::objects::process::ExitStatus;

/// The most threads one process may run at once.
pub(crate) const THREAD_LIMIT: u32 = 1_024;

/// The largest thread id wasi-threads allows.
const MAXIMUM_THREAD_ID: u32 = 0x1FFF_FFFF;

/// How a thread's call ended.
pub(crate) enum ThreadEnd {
    /// A thread other than the main one returned; the process goes on.
    #[cfg_attr(
        not(feature = "threads"),
        expect(dead_code, reason = "only threaded processes spawn")
    )]
    Returned,
    /// The process ends: the main thread returned, a thread exited the process, or trapped.
    Process(ExitStatus),
}

pub(crate) type ThreadFuture = Pin<Box<dyn Future<Output = ThreadEnd> + Send>>;

/// The process-wide thread state shared by its threads' host calls and its scheduler.
#[derive(Default)]
pub(crate) struct Threads {
    /// Threads started by `thread-spawn`, waiting for the scheduler to take them.
    spawned: crate::sync::Mutex<Vec<(u32, ThreadFuture)>>,
    next_id: AtomicU32,
    running: AtomicU32,
    /// The threads inside a `sched_lock` region, with their nesting depth. Usually one; more
    /// when a holder blocked and another thread then locked.
    locks: crate::sync::Mutex<BTreeMap<u32, u32>>,
    /// Wakes the process task, unless the scheduler is polling.
    task: Arc<TaskLink>,
}

/// How a thread's wake reaches the process task.
#[derive(Default)]
struct TaskLink {
    /// The process task's waker (set by the scheduler at each poll).
    waker: crate::sync::Mutex<Option<Waker>>,
    /// Set while the scheduler polls the threads: a wake then only marks the thread runnable,
    /// and the scheduler sees it (before this is cleared, or by looking again after).
    polling: AtomicBool,
}

impl TaskLink {
    /// Wakes the process task unless the scheduler is polling. `SeqCst`, with the scheduler's
    /// clear-then-look: either it sees what the caller marked, or the caller sees it cleared.
    fn wake(&self) {
        if self.polling.load(Ordering::SeqCst) {
            return;
        }
        if let Some(waker) = self.waker.lock().as_ref() {
            waker.wake_by_ref();
        }
    }
}

impl core::fmt::Debug for Threads {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("Threads").field("running", &self.running()).finish_non_exhaustive()
    }
}

impl Threads {
    pub(crate) fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    #[cfg_attr(
        not(feature = "threads"),
        expect(dead_code, reason = "only threaded processes spawn")
    )]
    /// Reserves an id for a new thread, or `None` at the limit.
    pub(crate) fn reserve(&self) -> Option<u32> {
        let running = self.running.fetch_add(1, Ordering::Relaxed);
        if running >= THREAD_LIMIT {
            self.running.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // Thread ids start at 1 (the main thread is 0) and are never reused; wasi-threads allows
        // ids up to 0x1FFF_FFFF, after which the process can start no more threads.
        let previous = self.next_id.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            (last < MAXIMUM_THREAD_ID).then_some(last + 1)
        });
        match previous {
            Ok(last) => Some(last + 1),
            Err(_) => {
                self.running.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    #[cfg_attr(
        not(feature = "threads"),
        expect(dead_code, reason = "only threaded processes spawn")
    )]
    /// Hands a new thread to the scheduler.
    pub(crate) fn spawn(&self, id: u32, thread: ThreadFuture) {
        self.spawned.lock().push((id, thread));
        core::sync::atomic::fence(Ordering::SeqCst);
        self.task.wake();
    }

    pub(crate) fn sched_lock(&self, thread: u32) {
        // Saturating: a program that nests 2^32 times cannot wrap the depth (or panic the kernel).
        let mut locks = self.locks.lock();
        let depth = locks.entry(thread).or_insert(0);
        *depth = depth.saturating_add(1);
    }

    /// Leaves one level of the region; `false` if the thread is not in one.
    pub(crate) fn sched_unlock(&self, thread: u32) -> bool {
        let mut locks = self.locks.lock();
        let Some(depth) = locks.get_mut(&thread) else { return false };
        *depth -= 1;
        if *depth == 0 {
            locks.remove(&thread);
        }
        true
    }

    fn holds_lock(&self, thread: u32) -> bool {
        self.locks.lock().contains_key(&thread)
    }

    fn any_lock(&self) -> bool {
        !self.locks.lock().is_empty()
    }

    fn thread_ended(&self, thread: u32) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.locks.lock().remove(&thread);
    }
}

/// The waker of one thread: marks it runnable and wakes the process task.
struct ThreadWake {
    runnable: AtomicBool,
    task: Arc<TaskLink>,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.runnable.store(true, Ordering::SeqCst);
        self.task.wake();
    }
}

struct Slot {
    id: u32,
    future: ThreadFuture,
    wake: Arc<ThreadWake>,
    waker: Waker,
}

/// How a pass, or a run, over a process's threads ended.
enum Run {
    /// The process ended.
    Ended(ExitStatus),
    /// A thread woke itself (or the passes ran out): the process's run ends, and it queues
    /// for another.
    Yielded,
    /// Every thread polled blocked (or returned); some may have been woken by others since.
    Blocked,
}

/// The most passes over its threads one run of a process makes: a bound on the run's length
/// besides the epoch ticks, which end a run at the next pass.
const MAXIMUM_PASSES: usize = 256;

/// The scheduler of one process's threads, owned by its task.
pub(crate) struct Scheduler {
    slots: Vec<Slot>,
}

impl Scheduler {
    pub(crate) fn new(threads: &Threads, main: ThreadFuture) -> Self {
        threads.running.fetch_add(1, Ordering::Relaxed);
        // Room for the main thread only: most processes never start another.
        let mut scheduler = Self { slots: Vec::with_capacity(1) };
        scheduler.add(threads, 0, main);
        scheduler
    }

    fn add(&mut self, threads: &Threads, id: u32, future: ThreadFuture) {
        let wake =
            Arc::new(ThreadWake { runnable: AtomicBool::new(true), task: threads.task.clone() });
        let waker = Waker::from(wake.clone());
        self.slots.push(Slot { id, future, wake, waker });
    }

    /// Whether a thread inside a `sched_lock` region is runnable (then only such threads run).
    fn runnable_holder(&self, threads: &Threads) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.wake.runnable.load(Ordering::Acquire) && threads.holds_lock(slot.id))
    }

    /// Polls the runnable threads (only the lock holder while it is runnable) until none is
    /// left that another thread of the process woke; ready when the process ends.
    ///
    /// A thread that wakes a sibling and then blocks (a futex or a channel between them) hands
    /// the processor to it within this poll: no trip through the executor, which would queue
    /// the process behind others and perhaps wake another worker. A thread that woke itself (an
    /// epoch tick, `thread_yield`) ends the process's run after the current pass, so the
    /// executor's other tasks still get their turn at every tick.
    pub(crate) fn poll(
        &mut self,
        threads: &Threads,
        context: &mut Context<'_>,
    ) -> Poll<ExitStatus> {
        {
            let mut task_waker = threads.task.waker.lock();
            if task_waker.as_ref().is_none_or(|known| !known.will_wake(context.waker())) {
                *task_waker = Some(context.waker().clone());
            }
        }
        threads.task.polling.store(true, Ordering::SeqCst);
        let run = self.run(threads);
        threads.task.polling.store(false, Ordering::SeqCst);
        let more = match run {
            Run::Ended(status) => return Poll::Ready(status),
            Run::Yielded => true,
            // Woken from elsewhere (another worker, a timer) as the run ended, unseen by it.
            Run::Blocked => self.any_runnable(threads),
        };
        if more {
            // Threads that yielded, or were woken or spawned after a yield: run them after
            // the executor has had its turn.
            context.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Whether a thread is runnable or waits to be taken.
    fn any_runnable(&self, threads: &Threads) -> bool {
        !threads.spawned.lock().is_empty()
            || self.slots.iter().any(|slot| slot.wake.runnable.load(Ordering::SeqCst))
    }

    /// Passes over the threads until none is runnable, one yields, or the passes run out.
    fn run(&mut self, threads: &Threads) -> Run {
        for _ in 0..MAXIMUM_PASSES {
            for (id, future) in core::mem::take(&mut *threads.spawned.lock()) {
                self.add(threads, id, future);
            }
            match self.pass(threads) {
                Run::Blocked if self.any_runnable(threads) => {}
                run => return run,
            }
        }
        Run::Yielded
    }

    /// Polls every runnable thread once.
    fn pass(&mut self, threads: &Threads) -> Run {
        let mut yielded = false;
        let mut index = 0;
        while index < self.slots.len() {
            // Re-checked at every step: a thread may have entered a region during this pass.
            let only_holders = threads.any_lock() && self.runnable_holder(threads);
            let slot = &mut self.slots[index];
            if (only_holders && !threads.holds_lock(slot.id))
                || !slot.wake.runnable.swap(false, Ordering::AcqRel)
            {
                index += 1;
                continue;
            }
            match slot.future.as_mut().poll(&mut Context::from_waker(&slot.waker)) {
                Poll::Pending => {
                    // Woken during its own poll: it yielded (or was woken from another core
                    // meanwhile, which is treated alike).
                    yielded |= slot.wake.runnable.load(Ordering::Acquire);
                    index += 1;
                }
                Poll::Ready(ThreadEnd::Returned) => {
                    let ended = self.slots.swap_remove(index);
                    threads.thread_ended(ended.id);
                }
                Poll::Ready(ThreadEnd::Process(status)) => return Run::Ended(status),
            }
        }
        if yielded { Run::Yielded } else { Run::Blocked }
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::task::{Context, Poll, Waker};

    use super::{Scheduler, ThreadEnd, ThreadFuture, Threads};
    use crate::objects::process::ExitStatus;
    use crate::sync::Mutex;

    /// The process task's waker: counts its wakes.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Two threads that pass a turn back and forth `turns` times, as through a futex: each
    /// wakes the other and blocks. Thread 0 ends the process after the last turn.
    fn ping_pong(turns: usize) -> (ThreadFuture, ThreadFuture) {
        let turn = Arc::new(AtomicUsize::new(0));
        let wakers: Arc<Mutex<[Option<Waker>; 2]>> = Arc::default();
        let player = |me: usize| -> ThreadFuture {
            let (turn, wakers) = (turn.clone(), wakers.clone());
            Box::pin(core::future::poll_fn(move |context| {
                let taken = turn.load(Ordering::Relaxed);
                if taken >= turns {
                    return Poll::Ready(ThreadEnd::Process(ExitStatus::exited(taken as i32)));
                }
                if taken % 2 != me {
                    wakers.lock()[me] = Some(context.waker().clone());
                    return Poll::Pending;
                }
                turn.store(taken + 1, Ordering::Relaxed);
                let other = wakers.lock()[1 - me].take();
                wakers.lock()[me] = Some(context.waker().clone());
                if let Some(other) = other {
                    other.wake();
                }
                Poll::Pending
            }))
        };
        (player(0), player(1))
    }

    #[test]
    fn threads_that_wake_each_other_and_block_run_in_one_poll() {
        let threads = Threads::default();
        let (first, second) = ping_pong(100);
        let mut scheduler = Scheduler::new(&threads, first);
        threads.spawn(1, second);
        let task = Arc::new(Counting::default());
        let waker = Waker::from(task.clone());
        let poll = scheduler.poll(&threads, &mut Context::from_waker(&waker));
        assert_eq!(poll, Poll::Ready(ExitStatus::exited(100)));
        assert_eq!(task.0.load(Ordering::Relaxed), 0, "the process task was never requeued");
    }

    #[test]
    fn a_thread_that_yields_ends_the_run_after_the_pass() {
        let threads = Threads::default();
        let polls = Arc::new(AtomicUsize::new(0));
        let yielder: ThreadFuture = {
            let polls = polls.clone();
            Box::pin(core::future::poll_fn(move |context| {
                polls.fetch_add(1, Ordering::Relaxed);
                context.waker().wake_by_ref();
                Poll::Pending
            }))
        };
        let mut scheduler = Scheduler::new(&threads, yielder);
        let task = Arc::new(Counting::default());
        let waker = Waker::from(task.clone());
        assert!(scheduler.poll(&threads, &mut Context::from_waker(&waker)).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "a yield ends the run");
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "and queues the process again");
    }
}
