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
    /// Wakes the process task (set by the scheduler at each poll).
    task_waker: Arc<crate::sync::Mutex<Option<Waker>>>,
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
        if let Some(waker) = self.task_waker.lock().as_ref() {
            waker.wake_by_ref();
        }
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
    task_waker: Arc<crate::sync::Mutex<Option<Waker>>>,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.runnable.store(true, Ordering::Release);
        if let Some(waker) = self.task_waker.lock().as_ref() {
            waker.wake_by_ref();
        }
    }
}

struct Slot {
    id: u32,
    future: ThreadFuture,
    wake: Arc<ThreadWake>,
    waker: Waker,
}

/// The scheduler of one process's threads, owned by its task.
pub(crate) struct Scheduler {
    slots: Vec<Slot>,
}

impl Scheduler {
    pub(crate) fn new(threads: &Threads, main: ThreadFuture) -> Self {
        threads.running.fetch_add(1, Ordering::Relaxed);
        let mut scheduler = Self { slots: Vec::new() };
        scheduler.add(threads, 0, main);
        scheduler
    }

    fn add(&mut self, threads: &Threads, id: u32, future: ThreadFuture) {
        let wake = Arc::new(ThreadWake {
            runnable: AtomicBool::new(true),
            task_waker: threads.task_waker.clone(),
        });
        let waker = Waker::from(wake.clone());
        self.slots.push(Slot { id, future, wake, waker });
    }

    /// Whether a thread inside a `sched_lock` region is runnable (then only such threads run).
    fn runnable_holder(&self, threads: &Threads) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.wake.runnable.load(Ordering::Acquire) && threads.holds_lock(slot.id))
    }

    /// Polls every runnable thread once (only the lock holder while it is runnable); ready
    /// when the process ends.
    pub(crate) fn poll(
        &mut self,
        threads: &Threads,
        context: &mut Context<'_>,
    ) -> Poll<ExitStatus> {
        {
            let mut task_waker = threads.task_waker.lock();
            if task_waker.as_ref().is_none_or(|known| !known.will_wake(context.waker())) {
                *task_waker = Some(context.waker().clone());
            }
        }
        for (id, future) in core::mem::take(&mut *threads.spawned.lock()) {
            self.add(threads, id, future);
        }
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
                Poll::Pending => index += 1,
                Poll::Ready(ThreadEnd::Returned) => {
                    let ended = self.slots.swap_remove(index);
                    threads.thread_ended(ended.id);
                }
                Poll::Ready(ThreadEnd::Process(status)) => return Poll::Ready(status),
            }
        }
        let more = !threads.spawned.lock().is_empty()
            || self.slots.iter().any(|slot| slot.wake.runnable.load(Ordering::Acquire));
        if more {
            // Threads that yielded or were spawned during this pass: run them after the
            // executor has had its turn.
            context.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
