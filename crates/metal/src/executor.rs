//! A single-core executor: boxed `Send` tasks, a ready queue fed by `Arc` wakers, a timer list
//! for `sleep_until`, and `hlt` when idle. The run loop polls the queued tasks in rounds and
//! checks the timers after each round (so tasks that keep yielding do not starve them); the
//! 1 ms timer interrupt ends each `hlt`, so sleeps resolve within ~1 ms of their deadline.
//! Interrupt handlers never wake tasks (so the locks here are never taken by them).
//! Needs interrupts set up (`interrupts::init`): otherwise an idle `hlt` never returns.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use spin::Mutex;

use crate::clock::now_ns;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    future: BoxFuture,
    queue_entry: Arc<TaskWaker>,
    waker: Waker,
}

static TASKS: Mutex<BTreeMap<u64, Task>> = Mutex::new(BTreeMap::new());
static READY: Mutex<VecDeque<u64>> = Mutex::new(VecDeque::new());
/// Sleeping futures by (deadline in ns, unique number).
static TIMERS: Mutex<BTreeMap<(u64, u64), Waker>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static HALTS: AtomicU64 = AtomicU64::new(0);

struct TaskWaker {
    id: u64,
    queued: AtomicBool,
}

impl TaskWaker {
    fn new() -> Arc<Self> {
        Arc::new(TaskWaker { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), queued: false.into() })
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            READY.lock().push_back(self.id);
        }
    }
}

struct JoinState<T> {
    output: Option<T>,
    waiter: Option<Waker>,
}

/// Resolves to the output of a spawned task.
#[derive(Debug)]
pub struct JoinHandle<T> {
    state: Arc<Mutex<JoinState<T>>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.lock();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waiter = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> core::fmt::Debug for JoinState<T> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(if self.output.is_some() { "JoinState(done)" } else { "JoinState" })
    }
}

/// Queues `future` as a task; it runs inside `run_until`.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let state = Arc::new(Mutex::new(JoinState { output: None, waiter: None }));
    let shared = state.clone();
    let future = Box::pin(async move {
        let output = future.await;
        let waiter = {
            let mut state = shared.lock();
            state.output = Some(output);
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    });
    let queue_entry = TaskWaker::new();
    let waker = Waker::from(queue_entry.clone());
    TASKS.lock().insert(queue_entry.id, Task { future, queue_entry: queue_entry.clone(), waker });
    queue_entry.wake_by_ref();
    JoinHandle { state }
}

/// Runs tasks until `future` completes, and returns its output. Tasks still pending stay
/// queued for the next call. Not reentrant (do not call it from a task).
pub fn run_until<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let main = TaskWaker::new();
    let main_waker = Waker::from(main.clone());
    main.wake_by_ref();
    loop {
        // One round: the tasks queued now. Those they queue (a task that yields wakes itself)
        // run in the next round, after the timers are checked: a task that always yields
        // (wasm interrupted by its epoch deadline) cannot starve the sleepers.
        let queued = READY.lock().len();
        for _ in 0..queued {
            let Some(id) = READY.lock().pop_front() else { break };
            if id == main.id {
                main.queued.store(false, Ordering::Release);
                if let Poll::Ready(output) =
                    future.as_mut().poll(&mut Context::from_waker(&main_waker))
                {
                    return output;
                }
                continue;
            }
            // The task leaves the map while it runs, so it may spawn (the lock is not held).
            let Some(mut task) = TASKS.lock().remove(&id) else { continue };
            task.queue_entry.queued.store(false, Ordering::Release);
            if task.future.as_mut().poll(&mut Context::from_waker(&task.waker)).is_pending() {
                TASKS.lock().insert(id, task);
            }
        }
        wake_expired_timers();
        x86_64::instructions::interrupts::disable();
        if READY.lock().is_empty() {
            HALTS.fetch_add(1, Ordering::Relaxed);
            // `sti; hlt`: an interrupt cannot slip in between the check and the halt.
            x86_64::instructions::interrupts::enable_and_hlt();
        } else {
            x86_64::instructions::interrupts::enable();
        }
    }
}

fn wake_expired_timers() {
    let now = now_ns();
    let mut expired = Vec::new();
    {
        let mut timers = TIMERS.lock();
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            expired.push(entry.remove());
        }
    }
    expired.into_iter().for_each(Waker::wake);
}

/// How many times the run loop halted for lack of work.
pub fn halts() -> u64 {
    HALTS.load(Ordering::Relaxed)
}

/// Completes at or after `deadline_ns` (on the `clock::now_ns` scale).
#[derive(Debug)]
pub struct Sleep {
    deadline: u64,
    timer: Option<(u64, u64)>,
}

pub fn sleep_until(deadline_ns: u64) -> Sleep {
    Sleep { deadline: deadline_ns, timer: None }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if now_ns() >= self.deadline {
            if let Some(timer) = self.timer.take() {
                TIMERS.lock().remove(&timer);
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let timer =
            *self.timer.get_or_insert_with(|| (deadline, NEXT_ID.fetch_add(1, Ordering::Relaxed)));
        TIMERS.lock().insert(timer, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            TIMERS.lock().remove(&timer);
        }
    }
}
