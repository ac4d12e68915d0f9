//! The process watchdog: a process that arms it must call `watchdog_alive` within every
//! interval, or it is killed with reason "watchdog", whether it spins without calls, waits,
//! or sleeps. One background task per armed watchdog sleeps until the current deadline.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use core::future::poll_fn;
use core::task::{Poll, Waker};

use nebulet_abi::{Error, ExitReason};

use crate::objects::process::Process;
use crate::platform::Platform;
use crate::processors::Preemption;
use crate::wait::Deadline;

/// The shortest interval a program may ask for.
pub(crate) const MINIMUM_INTERVAL: i64 = 1_000_000;

#[derive(Debug, Default)]
struct State {
    /// 0 when disarmed.
    interval: i64,
    deadline: i64,
    /// Changes at every setup, so the task notices a new interval.
    generation: u64,
    task_running: bool,
    task_waker: Option<Waker>,
}

#[derive(Debug, Default)]
pub(crate) struct Watchdog {
    state: crate::sync::Mutex<State>,
}

impl Watchdog {
    /// Arms (or with 0, disarms) the watchdog of `process`.
    pub(crate) fn setup(
        &self,
        process: &Arc<Process>,
        platform: &Arc<dyn Platform>,
        preemption: &Arc<Preemption>,
        interval: i64,
    ) -> Result<(), Error> {
        if interval != 0 && interval < MINIMUM_INTERVAL {
            return Err(Error::InvalidArgs);
        }
        let (start_task, waker) = {
            let mut state = self.state.lock();
            state.generation += 1;
            state.interval = interval;
            state.deadline = platform.now().saturating_add(interval);
            let start_task = interval != 0 && !state.task_running;
            state.task_running |= start_task;
            (start_task, state.task_waker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        if start_task {
            platform.spawn(Box::pin(run(
                Arc::downgrade(process),
                platform.clone(),
                preemption.clone(),
            )));
        }
        Ok(())
    }

    /// Starts a new interval; `ERR_BAD_STATE` if the watchdog is not armed.
    pub(crate) fn alive(&self, now: i64) -> Result<(), Error> {
        let mut state = self.state.lock();
        if state.interval == 0 {
            return Err(Error::BadState);
        }
        state.deadline = now.saturating_add(state.interval);
        Ok(())
    }
}

enum Wake {
    Changed,
    Deadline,
    Gone,
}

async fn run(process: Weak<Process>, platform: Arc<dyn Platform>, preemption: Arc<Preemption>) {
    loop {
        let (deadline, generation) = {
            let Some(strong) = process.upgrade() else { return };
            let mut state = strong.watchdog.state.lock();
            if state.interval == 0 {
                state.task_running = false;
                return;
            }
            (state.deadline, state.generation)
        };
        let mut sleep = Deadline::new(&*platform, deadline);
        let wake = poll_fn(|context| {
            let Some(strong) = process.upgrade() else { return Poll::Ready(Wake::Gone) };
            {
                let mut state = strong.watchdog.state.lock();
                if state.generation != generation {
                    return Poll::Ready(Wake::Changed);
                }
                state.task_waker = Some(context.waker().clone());
            }
            if sleep.poll_passed(context) { Poll::Ready(Wake::Deadline) } else { Poll::Pending }
        })
        .await;
        match wake {
            Wake::Gone => return,
            Wake::Changed => continue,
            Wake::Deadline => {
                let Some(strong) = process.upgrade() else { return };
                let expired = {
                    let mut state = strong.watchdog.state.lock();
                    // An `alive` since the sleep began moved the deadline: sleep again.
                    let expired =
                        state.generation == generation && platform.now() >= state.deadline;
                    if expired {
                        state.interval = 0;
                        state.task_running = false;
                    }
                    expired
                };
                if expired {
                    strong.kill(ExitReason::Watchdog);
                    // It is most likely spinning: it notices at its next loop or call.
                    preemption.request();
                    return;
                }
            }
        }
    }
}
