//! Timers: objects that assert SIGNALED when their deadline passes.
//!
//! A set timer has one background task on the platform's executor; re-setting or canceling
//! wakes that task rather than starting another, so a program cannot pile up tasks.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use core::future::poll_fn;
use core::task::{Poll, Waker};

use nebulet_abi::Signals;

use crate::platform::Platform;
use crate::wait::{Deadline, SignalCell};

#[derive(Debug, Default)]
struct TimerState {
    deadline: Option<i64>,
    /// Changes on every set and cancel, so the task knows its deadline is stale.
    generation: u64,
    task_running: bool,
    task_waker: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct Timer {
    pub(crate) koid: u64,
    pub(crate) signals: SignalCell,
    state: crate::sync::Mutex<TimerState>,
}

enum Outcome {
    Fired,
    Changed,
    Gone,
}

impl Timer {
    pub(crate) fn new() -> Self {
        Self { koid: super::new_koid(), signals: SignalCell::default(), state: Default::default() }
    }

    /// Deasserts SIGNALED and arms the timer for `deadline`.
    pub(crate) fn set(self: &Arc<Self>, platform: &Arc<dyn Platform>, deadline: i64) {
        let (start_task, waker) = {
            let mut state = self.state.lock();
            state.generation += 1;
            if deadline <= platform.now() {
                // Already past: signaled at once, with no task to wait for it.
                state.deadline = None;
                self.signals.update(Signals::NONE, Signals::SIGNALED);
                (false, state.task_waker.take())
            } else {
                // Under the state lock, so a firing task cannot assert SIGNALED in between.
                self.signals.update(Signals::SIGNALED, Signals::NONE);
                state.deadline = Some(deadline);
                let start_task = !state.task_running;
                state.task_running = true;
                (start_task, state.task_waker.take())
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        if start_task {
            platform.spawn(Box::pin(run(Arc::downgrade(self), platform.clone())));
        }
    }

    /// Deasserts SIGNALED and disarms the timer.
    pub(crate) fn cancel(&self) {
        let waker = {
            let mut state = self.state.lock();
            state.generation += 1;
            state.deadline = None;
            self.signals.update(Signals::SIGNALED, Signals::NONE);
            state.task_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(waker) = self.state.get_mut().task_waker.take() {
            waker.wake();
        }
    }
}

/// The timer's task: sleeps until the current deadline, follows changes, ends when disarmed.
async fn run(timer: Weak<Timer>, platform: Arc<dyn Platform>) {
    loop {
        let (deadline, generation) = {
            let Some(strong) = timer.upgrade() else {
                return;
            };
            let mut state = strong.state.lock();
            match state.deadline {
                Some(deadline) => (deadline, state.generation),
                None => {
                    state.task_running = false;
                    return;
                }
            }
        };
        let mut sleep = Deadline::new(&*platform, deadline);
        let outcome = poll_fn(|context| {
            let Some(strong) = timer.upgrade() else {
                return Poll::Ready(Outcome::Gone);
            };
            {
                let mut state = strong.state.lock();
                if state.generation != generation {
                    return Poll::Ready(Outcome::Changed);
                }
                state.task_waker = Some(context.waker().clone());
            }
            if sleep.poll_passed(context) { Poll::Ready(Outcome::Fired) } else { Poll::Pending }
        })
        .await;
        match outcome {
            Outcome::Gone => return,
            Outcome::Changed => continue,
            Outcome::Fired => {
                let Some(strong) = timer.upgrade() else {
                    return;
                };
                let mut state = strong.state.lock();
                if state.generation == generation {
                    state.deadline = None;
                    // Under the state lock: a set or cancel that follows sees it and clears it.
                    strong.signals.update(Signals::NONE, Signals::SIGNALED);
                }
            }
        }
    }
}
