//! The executor: one run queue per core of `async_task` runnables, work stealing, a timer list
//! for `sleep_until`, and `hlt` when idle.
//!
//! A woken task joins the queue of the core that woke it. Each core runs its queue in rounds
//! (the tasks queued when the round began: a task that keeps yielding, wasm interrupted by its
//! epoch deadline, runs again only in the next round) and checks the timers after each round.
//! A core whose queue is empty steals half of another's. A core with nothing to do halts; its
//! 1 ms timer tick ends the halt (so sleeps resolve within ~1 ms of their deadline), and so does
//! the wake-up IPI a core sends to an idle one when it queues a task. Interrupt handlers never
//! wake tasks (so the locks here are never taken by them). Written here rather than taken from
//! a crate: the executors that run without `std` (embassy's, smol's `async-executor` needs
//! `std`) have no per-core queues for a kernel's cores.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use async_task::Runnable;
use spin::Mutex;

use crate::clock::now_ns;
use crate::cpus::{self, MAX_CPUS};

static QUEUES: [Mutex<VecDeque<Runnable>>; MAX_CPUS] =
    [const { Mutex::new(VecDeque::new()) }; MAX_CPUS];
/// Bit `i`: core `i` is halted or about to halt.
static IDLE: AtomicU64 = AtomicU64::new(0);
/// Sleeping futures by (deadline in ns, unique number).
static TIMERS: Mutex<BTreeMap<(u64, u64), Waker>> = Mutex::new(BTreeMap::new());
static NEXT_TIMER: AtomicU64 = AtomicU64::new(1);

/// Queues `runnable` on this core and wakes an idle core, which steals it if this one is busy.
fn schedule(runnable: Runnable) {
    let here = cpus::current().index;
    QUEUES[here].lock().push_back(runnable);
    wake_an_idle_core(here);
}

fn wake_an_idle_core(here: usize) {
    let idle = IDLE.load(Ordering::SeqCst) & !(1 << here);
    if idle != 0 {
        cpus::wake(idle.trailing_zeros() as usize);
    }
}

/// Queues `future` as a task; it runs on whichever core gets to it first.
pub fn spawn<F>(future: F) -> async_task::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (runnable, task) = async_task::spawn(future, schedule);
    runnable.schedule();
    task
}

/// Runs one round of this core's queue (or a task stolen from another) and the expired timers;
/// whether it ran a task.
fn run_round(here: usize) -> bool {
    let queued = QUEUES[here].lock().len();
    let mut ran = false;
    for _ in 0..queued {
        let Some(runnable) = QUEUES[here].lock().pop_front() else { break };
        runnable.run();
        ran = true;
    }
    if !ran && let Some(runnable) = steal(here) {
        runnable.run();
        ran = true;
    }
    wake_expired_timers();
    ran
}

/// Takes half of the first non-empty queue after this core's: the first task to run now, the
/// rest to this core's queue. Never holds two queues' locks at once.
fn steal(here: usize) -> Option<Runnable> {
    let online = cpus::online();
    for offset in 1..online {
        let victim = (here + offset) % online;
        let mut stolen: VecDeque<Runnable> = {
            let mut queue = QUEUES[victim].lock();
            let count = queue.len().div_ceil(2);
            let keep = queue.len() - count;
            queue.drain(keep..).collect()
        };
        if let Some(first) = stolen.pop_front() {
            QUEUES[here].lock().extend(stolen);
            return Some(first);
        }
    }
    None
}

/// Whether any core has a task queued.
fn work_queued() -> bool {
    QUEUES[..cpus::online()].iter().any(|queue| !queue.lock().is_empty())
}

/// Halts this core until an interrupt, unless there is work (or `woken` says the caller has).
fn idle(here: usize, woken: &AtomicBool) {
    let cpu = cpus::current();
    x86_64::instructions::interrupts::disable();
    IDLE.fetch_or(1 << here, Ordering::SeqCst);
    if woken.load(Ordering::SeqCst) || work_queued() {
        x86_64::instructions::interrupts::enable();
    } else {
        cpu.halts.fetch_add(1, Ordering::Relaxed);
        // `sti; hlt`: an interrupt (a tick, a wake-up IPI) cannot slip in between the check and
        // the halt; a core that queued work after the check sees the IDLE bit and sends one.
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    IDLE.fetch_and(!(1 << here), Ordering::SeqCst);
}

/// An application processor's loop: runs tasks forever.
pub fn run_forever() -> ! {
    let here = cpus::current().index;
    let never = AtomicBool::new(false);
    loop {
        if !run_round(here) {
            idle(here, &never);
        }
    }
}

/// The waker of `run_until`'s future: flags it, and wakes its core if that one is idle.
struct MainWaker {
    woken: AtomicBool,
    core: usize,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if IDLE.load(Ordering::SeqCst) & (1 << self.core) != 0 {
            cpus::wake(self.core);
        }
    }
}

/// Runs tasks on this core, beside the other cores, until `future` completes, and returns its
/// output. Tasks still pending stay queued. Not reentrant (do not call it from a task).
pub fn run_until<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let here = cpus::current().index;
    let main = Arc::new(MainWaker { woken: AtomicBool::new(true), core: here });
    let waker = Waker::from(main.clone());
    loop {
        if main.woken.swap(false, Ordering::SeqCst)
            && let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker))
        {
            return output;
        }
        if !run_round(here) {
            idle(here, &main.woken);
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

/// How many times the cores halted for lack of work, all together.
pub fn halts() -> u64 {
    cpus::all().map(|cpu| cpu.halts.load(Ordering::Relaxed)).sum()
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
        let timer = *self
            .timer
            .get_or_insert_with(|| (deadline, NEXT_TIMER.fetch_add(1, Ordering::Relaxed)));
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
