//! Direct hand-off: a task that the running task wakes runs next on the same worker, once the
//! running one is pending, with no trip through the executor's queues and no wake-up of
//! another core (as in L4's and Singularity's message fast paths).
//!
//! tokio already runs a task woken from a worker next on that worker (its LIFO slot), but only
//! three times in a row: then it queues the task and wakes another worker, which steals it. So
//! two processes that exchange messages cross cores every few messages, and a core woken from
//! idle takes tens of microseconds here. Instead, each spawned task's future lives in a shared
//! [`TaskCell`], which any worker may poll: a task woken by the task being polled on this
//! worker is kept in the worker's slot, and polled right after, up to [`CHAIN`] hand-offs in
//! one poll of the first task. Whether a process may run at all is still the kernel's to say
//! (its turns); this only decides where it runs. Written here, not taken from a crate: no
//! executor exposes such a policy.
//!
//! A task started from a worker is kept in that slot too ([`spawn`]), and becomes an executor
//! task only once it has to wait: a process that runs to its end in its first turn (a tiny
//! program, a request handler) never costs a spawn. tokio's spawn from a worker also wakes
//! another, parked worker whenever its queue holds more than one task, which cost every process
//! start about a microsecond and a core's wake-up.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use nebulet_kernel::BoxFuture;
use tokio::runtime::Handle;

/// The most tasks polled by hand-off in one poll of the task that began the chain, and the
/// longest the chain goes on: they bound how long the worker's other tasks wait (a hand-off
/// takes about a microsecond, but a process's run may last up to an epoch tick).
const CHAIN: usize = 32;
const CHAIN_TIME: std::time::Duration = std::time::Duration::from_millis(1);

/// A task's state: nobody polls it, one worker polls it, one polls it and another worker
/// found it so (its executor task must be polled again after), or it has ended.
const IDLE: u8 = 0;
const POLLING: u8 = 1;
const POLLING_AGAIN: u8 = 2;
const DONE: u8 = 3;

thread_local! {
    /// The task this worker is polling (its address), or 0.
    static POLLED: Cell<usize> = const { Cell::new(0) };
    /// The task to poll next on this worker, woken by the one polled.
    static NEXT: RefCell<Option<Arc<TaskCell>>> = const { RefCell::new(None) };
}

/// A spawned task's future, which any worker may poll.
pub(crate) struct TaskCell {
    state: AtomicU8,
    future: Mutex<Option<BoxFuture<()>>>,
    /// The executor task that owns this cell, if it has one yet.
    task: Mutex<Owner>,
    /// The waker the future is polled with (it holds the cell weakly: no cycle).
    waker: Waker,
    /// Where its executor task is spawned, once it needs one.
    runtime: Handle,
}

/// The executor task of a cell: none yet (its future was only polled by hand-off), spawned,
/// or polled (its waker known).
#[derive(Default)]
struct Owner {
    /// Whether an executor task owns the cell.
    spawned: bool,
    /// That task's waker, once it was polled.
    waker: Option<Waker>,
    /// The future, polled by hand-off, waits for a wake that has not come yet: the new task's
    /// first poll need not poll it.
    waiting: bool,
}

/// The waker of a task's future: hands the task to the worker that woke it, or wakes its
/// executor task.
struct Link(Weak<TaskCell>);

impl Wake for Link {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(cell) = self.0.upgrade() else { return };
        if let Some(cell) = offer(cell) {
            cell.wake_task();
        }
    }
}

/// Keeps `cell` to be polled next on this worker if a task other than it is being polled here
/// and nothing is kept yet; otherwise gives it back.
fn offer(cell: Arc<TaskCell>) -> Option<Arc<TaskCell>> {
    let polled = POLLED.with(Cell::get);
    if polled == 0 || polled == Arc::as_ptr(&cell) as usize {
        return Some(cell);
    }
    NEXT.with(|next| {
        let mut next = next.borrow_mut();
        match &*next {
            None => {
                *next = Some(cell);
                None
            }
            Some(kept) if Arc::ptr_eq(kept, &cell) => None,
            Some(_) => Some(cell),
        }
    })
}

/// How polling a cell went.
enum Polled {
    Pending,
    /// Its future ended (now or before).
    Done,
    /// Another worker polls it; that worker wakes its executor task when done.
    Busy,
}

impl TaskCell {
    fn new(future: BoxFuture<()>, runtime: Handle) -> Arc<Self> {
        Arc::new_cyclic(|cell| Self {
            state: AtomicU8::new(IDLE),
            future: Mutex::new(Some(future)),
            task: Mutex::new(Owner::default()),
            waker: Waker::from(Arc::new(Link(cell.clone()))),
            runtime,
        })
    }

    fn owner(&self) -> std::sync::MutexGuard<'_, Owner> {
        self.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Has its executor task poll it: wakes that task, or spawns it if it has none yet.
    fn wake_task(self: &Arc<Self>) {
        let mut owner = self.owner();
        owner.waiting = false;
        if let Some(task) = &owner.waker {
            task.wake_by_ref();
        } else if !owner.spawned {
            owner.spawned = true;
            drop(owner);
            self.spawn_task();
        }
        // Spawned but not polled yet: its first poll polls the future.
    }

    /// Gives the cell, whose future just went pending when polled by hand-off, an executor task
    /// if it has none: something must own it until it is woken.
    fn adopt(self: &Arc<Self>) {
        let mut owner = self.owner();
        if !owner.spawned {
            owner.spawned = true;
            owner.waiting = true;
            drop(owner);
            self.spawn_task();
        }
    }

    /// Wakes its executor task, if it has one, to see that the future ended.
    fn wake_ended(&self) {
        if let Some(task) = &self.owner().waker {
            task.wake_by_ref();
        }
    }

    fn spawn_task(self: &Arc<Self>) {
        self.runtime.spawn(crate::fatal::guarded(Task(self.clone())));
    }

    /// Records the executor task's waker; whether its future waits for a wake yet to come.
    fn register(&self, waker: &Waker) -> bool {
        let mut owner = self.owner();
        if owner.waker.as_ref().is_none_or(|known| !known.will_wake(waker)) {
            owner.waker = Some(waker.clone());
        }
        std::mem::take(&mut owner.waiting)
    }

    /// Polls the future once, here, unless another worker is polling it.
    fn poll_here(self: &Arc<Self>) -> Polled {
        loop {
            match self.state.compare_exchange(IDLE, POLLING, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(DONE) => return Polled::Done,
                Err(POLLING_AGAIN) => return Polled::Busy,
                Err(_) => {
                    let again = self.state.compare_exchange(
                        POLLING,
                        POLLING_AGAIN,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if again.is_ok() {
                        return Polled::Busy;
                    }
                    // It went idle (or ended) meanwhile: look again.
                }
            }
        }
        let ended = {
            let mut future = self.future.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let previous = POLLED.with(|polled| polled.replace(Arc::as_ptr(self) as usize));
            let poll = match future.as_mut() {
                Some(running) => running.as_mut().poll(&mut Context::from_waker(&self.waker)),
                None => Poll::Ready(()),
            };
            POLLED.with(|polled| polled.set(previous));
            if poll.is_ready() {
                *future = None;
            }
            poll.is_ready()
        };
        if ended {
            self.state.store(DONE, Ordering::Release);
            return Polled::Done;
        }
        if self.state.swap(IDLE, Ordering::AcqRel) == POLLING_AGAIN {
            // Its executor task was polled meanwhile and found it busy: it must look again.
            self.wake_task();
        }
        Polled::Pending
    }
}

/// Starts `future` on `runtime`: next on this worker, after the task being polled here, if there
/// is one and nothing else is kept to run next; otherwise as an executor task. A future polled
/// by hand-off gets its executor task only when it must wait.
pub(crate) fn spawn(runtime: &Handle, future: BoxFuture<()>) {
    if let Some(cell) = offer(TaskCell::new(future, runtime.clone())) {
        cell.wake_task();
    }
}

/// The executor's task of a cell: polls it, then the tasks it handed the worker to.
pub(crate) struct Task(Arc<TaskCell>);

impl Future for Task {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let own = &self.0;
        // Whether it ended or not, what it woke runs next (an ending process wakes its waiters).
        let started = std::time::Instant::now();
        if !own.register(context.waker()) {
            own.poll_here();
        }
        for _ in 0..CHAIN {
            if started.elapsed() >= CHAIN_TIME {
                break;
            }
            let Some(next) = NEXT.with(|next| next.borrow_mut().take()) else { break };
            match next.poll_here() {
                // Its executor task, if it has one, ends at its next poll.
                Polled::Done => next.wake_ended(),
                Polled::Pending => next.adopt(),
                // The worker polling it has it woken (or spawned) when done.
                Polled::Busy => {}
            }
        }
        // Past the bound, the one kept goes through the executor.
        if let Some(next) = NEXT.with(|next| next.borrow_mut().take()) {
            next.wake_task();
        }
        if own.state.load(Ordering::Acquire) == DONE { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Two tasks that pass a turn back and forth `turns` times: each wakes the other, then waits.
    fn ping_pong(turns: usize, worker_polls: Arc<AtomicUsize>) -> [BoxFuture<()>; 2] {
        let turn = Arc::new(AtomicUsize::new(0));
        let wakers: Arc<Mutex<[Option<Waker>; 2]>> = Arc::default();
        let player = |me: usize| -> BoxFuture<()> {
            let (turn, wakers) = (turn.clone(), wakers.clone());
            let worker_polls = worker_polls.clone();
            Box::pin(std::future::poll_fn(move |context| {
                worker_polls.fetch_add(1, Ordering::Relaxed);
                let taken = turn.load(Ordering::Relaxed);
                if taken >= turns {
                    let other = wakers.lock().unwrap()[1 - me].take();
                    other.into_iter().for_each(Waker::wake);
                    return Poll::Ready(());
                }
                wakers.lock().unwrap()[me] = Some(context.waker().clone());
                if taken % 2 == me {
                    turn.store(taken + 1, Ordering::Relaxed);
                    let other = wakers.lock().unwrap()[1 - me].take();
                    other.into_iter().for_each(Waker::wake);
                }
                Poll::Pending
            }))
        };
        [player(0), player(1)]
    }

    #[test]
    fn a_task_woken_by_the_polled_task_runs_next_on_the_same_worker() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let [first, second] = ping_pong(1_000, polls.clone());
        // Counts the polls of the executor's tasks, as opposed to the polls of the futures.
        let task_polls = Arc::new(AtomicUsize::new(0));
        let counted = |future: BoxFuture<()>| {
            let cell = TaskCell::new(future, runtime.handle().clone());
            // Spawned by the test itself, so that its polls are counted.
            cell.owner().spawned = true;
            let task = Task(cell);
            let (mut task, task_polls) = (task, task_polls.clone());
            std::future::poll_fn(move |context| {
                task_polls.fetch_add(1, Ordering::Relaxed);
                Pin::new(&mut task).poll(context)
            })
        };
        let (first, second) = (runtime.spawn(counted(first)), runtime.spawn(counted(second)));
        runtime.block_on(async {
            first.await.unwrap();
            second.await.unwrap();
        });
        let (polls, task_polls) =
            (polls.load(Ordering::Relaxed), task_polls.load(Ordering::Relaxed));
        assert!(polls > 1_000, "{polls}");
        // Without hand-off each of the 1,000 turns is a poll of an executor task.
        assert!(task_polls * 8 < polls, "{task_polls} executor polls for {polls} turns");
    }

    /// Pending once (having woken its task), then ready.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|context| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            context.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }

    #[test]
    fn a_task_started_by_a_polled_task_runs_there_and_needs_an_executor_task_only_to_wait() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let handle = runtime.handle().clone();
        let ended = Arc::new(AtomicUsize::new(0));
        // The most executor tasks alive that a child that ends in its first poll saw, less the
        // waiting children's: the parent's task alone if the child has no task of its own.
        let most_alive = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        let (done, finished) = std::sync::mpsc::channel();
        let parent: BoxFuture<()> = {
            let (handle, ended, most_alive) = (handle.clone(), ended.clone(), most_alive.clone());
            let waiting = waiting.clone();
            Box::pin(async move {
                let mut gates = Vec::new();
                for index in 0..200 {
                    let (ended, most_alive) = (ended.clone(), most_alive.clone());
                    let (alive, waiting) = (handle.clone(), waiting.clone());
                    let (open, gate) = tokio::sync::oneshot::channel::<()>();
                    // Every other child waits for its gate, opened after all have started.
                    let waits = index % 2 == 1;
                    if waits {
                        gates.push(open);
                        waiting.fetch_add(1, Ordering::Relaxed);
                    }
                    spawn(
                        &handle,
                        Box::pin(async move {
                            if waits {
                                gate.await.unwrap();
                            } else {
                                let count = alive.metrics().num_alive_tasks()
                                    - waiting.load(Ordering::Relaxed);
                                most_alive.fetch_max(count, Ordering::Relaxed);
                            }
                            ended.fetch_add(1, Ordering::Relaxed);
                        }),
                    );
                    // Pending: the child kept for this worker runs now.
                    yield_once().await;
                }
                for gate in gates {
                    gate.send(()).unwrap();
                }
                while ended.load(Ordering::Relaxed) < 200 {
                    yield_once().await;
                }
                done.send(()).unwrap();
            })
        };
        spawn(&handle, parent);
        finished.recv_timeout(std::time::Duration::from_secs(60)).expect("every child ended");
        assert_eq!(ended.load(Ordering::Relaxed), 200);
        // The parent's task and the waiting children's, never a task for one that ended at once.
        assert_eq!(most_alive.load(Ordering::Relaxed), 1, "executor tasks beside the waiting ones");
        assert!(runtime.metrics().num_alive_tasks() <= 1);
    }

    #[test]
    fn a_task_polled_elsewhere_is_not_polled_twice_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let cell = TaskCell::new(Box::pin(std::future::pending()), runtime.handle().clone());
        cell.state.store(POLLING, Ordering::Release);
        assert!(matches!(cell.poll_here(), Polled::Busy));
        assert_eq!(cell.state.load(Ordering::Acquire), POLLING_AGAIN);
        cell.state.store(DONE, Ordering::Release);
        assert!(matches!(cell.poll_here(), Polled::Done));
    }
}
