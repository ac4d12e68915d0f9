//! [`Event`], [`Timer`], [`Module`] and [`Process`].

use nebulet_abi::layout::{InfoBudget, InfoProcess};
use nebulet_abi::{Error, ExitReason, InfoTopic, Limit, ProcessState, Signals};

use crate::handle::{Failed, Handle, typed_handle};
use crate::sys;

typed_handle! {
    /// An event: a bare set of signals that programs set and clear
    /// ([`Signals::SIGNALED`] and the user signals), to wake waiters.
    Event
}

impl Event {
    /// A new event with no signal asserted.
    pub fn create() -> Result<Event, Error> {
        Ok(Event(Handle::from_kernel(sys::event_create()?)?))
    }

    /// Clears then sets signals (a subset of [`Signals::EVENT_SETTABLE`]).
    pub fn signal(&self, clear: Signals, set: Signals) -> Result<(), Error> {
        self.0.signal(clear, set)
    }
}

typed_handle! {
    /// A timer: asserts [`Signals::SIGNALED`] when its deadline passes.
    Timer
}

impl Timer {
    /// A new, unset timer.
    pub fn create() -> Result<Timer, Error> {
        Ok(Timer(Handle::from_kernel(sys::timer_create()?)?))
    }

    /// Arms the timer for `deadline` (monotonic nanoseconds), deasserting SIGNALED until then.
    pub fn set(&self, deadline: i64) -> Result<(), Error> {
        sys::timer_set(self.0.as_raw(), deadline)
    }

    /// Disarms the timer and deasserts SIGNALED.
    pub fn cancel(&self) -> Result<(), Error> {
        sys::timer_cancel(self.0.as_raw())
    }
}

typed_handle! {
    /// A validated, compiled wasm module: what processes are made of.
    Module
}

impl Module {
    /// Validates and compiles wasm bytes ([`Error::BadModule`] if they are not a valid module).
    pub fn compile(bytes: &[u8]) -> Result<Module, Error> {
        Ok(Module(Handle::from_kernel(sys::module_compile(bytes)?)?))
    }
}

typed_handle! {
    /// A process: an instance of a [`Module`] with its own memory and handles.
    ///
    /// Signals: [`Signals::TERMINATED`] once it has ended. Dropping the handle does not end it.
    Process
}

impl Process {
    /// A new process of `module` named `name` (at most
    /// [`NAME_MAX_BYTES`](nebulet_abi::NAME_MAX_BYTES)), not started yet. The module handle
    /// needs [`Rights::EXECUTE`](nebulet_abi::Rights::EXECUTE).
    pub fn create(module: &Module, name: &str) -> Result<Process, Error> {
        Ok(Process(Handle::from_kernel(sys::process_create(module.0.as_raw(), name.as_bytes())?)?))
    }

    /// [`Process::create`] with options of `process_create_with`, e.g.
    /// [`PROCESS_CREATE_ISOLATED`](nebulet_abi::PROCESS_CREATE_ISOLATED): the process runs in a
    /// hardware protection domain of its own ([`Error::NotSupported`] where there are none).
    pub fn create_with(module: &Module, name: &str, options: u32) -> Result<Process, Error> {
        let raw = sys::process_create_with(module.0.as_raw(), name.as_bytes(), options)?;
        Ok(Process(Handle::from_kernel(raw)?))
    }

    /// Starts the process, moving `bootstrap` into it (the child gets it from
    /// [`process::bootstrap`](crate::process::bootstrap)). On failure (e.g.
    /// [`Error::BadState`] if already started) the handle is given back.
    pub fn start(&self, bootstrap: Option<Handle>) -> Result<(), Failed<Option<Handle>>> {
        let raw = bootstrap.as_ref().map_or(nebulet_abi::HANDLE_INVALID, Handle::as_raw);
        match sys::process_start(self.0.as_raw(), raw) {
            Ok(()) => {
                // It belongs to the child now.
                let _ = bootstrap.map(Handle::into_raw);
                Ok(())
            }
            Err(error) => Err(Failed { error, returned: bootstrap }),
        }
    }

    /// Sets one resource limit of the process, before it starts: how much memory, how many
    /// handles, queued message bytes and children it may have, and how much CPU time it may use
    /// (see [`Limit`] for what each means and what happens past it). Limits are for one process:
    /// its children get their own.
    ///
    /// `value` is bytes, a count or nanoseconds, as the limit says. The kernel takes values up
    /// to `i64::MAX`; a larger value is taken as `i64::MAX`, so `u64::MAX` means "no limit".
    ///
    /// Errors: [`Error::BadState`] once the process has started; [`Error::AccessDenied`] if the
    /// handle lacks [`Rights::MANAGE`](nebulet_abi::Rights::MANAGE).
    ///
    /// ```no_run
    /// use sip::{Limit, Module, Process};
    ///
    /// # fn start(module: &Module) -> Result<(), sip::Error> {
    /// let child = Process::create(module, "worker")?;
    /// child.set_limit(Limit::MemoryBytes, 16 << 20)?; // 16 MiB of linear memory
    /// child.set_limit(Limit::Handles, 64)?;
    /// child.set_limit(Limit::CpuNanoseconds, 250_000_000)?; // 250 ms of CPU time
    /// child.start(None).map_err(|failed| failed.error)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_limit(&self, limit: Limit, value: u64) -> Result<(), Error> {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        sys::process_set_limit(self.0.as_raw(), limit as u32, value)
    }

    /// Ends the process with reason "killed"; its handles close.
    pub fn kill(&self) -> Result<(), Error> {
        sys::process_kill(self.0.as_raw())
    }

    /// The process's state, exit code and reason, threads, memory and CPU time.
    pub fn info(&self) -> Result<InfoProcess, Error> {
        let mut bytes = [0u8; InfoProcess::SIZE];
        let actual = sys::object_get_info(self.0.as_raw(), InfoTopic::Process as u32, &mut bytes)?;
        if actual < InfoProcess::SIZE {
            return Err(Error::Internal);
        }
        Ok(InfoProcess::from_bytes(&bytes))
    }

    /// Its budget: per limit, what it and its subtree use, its own limit, and what is available.
    pub fn budget(&self) -> Result<InfoBudget, Error> {
        let mut bytes = [0u8; InfoBudget::SIZE];
        let actual = sys::object_get_info(self.0.as_raw(), InfoTopic::Budget as u32, &mut bytes)?;
        if actual < InfoBudget::SIZE {
            return Err(Error::Internal);
        }
        Ok(InfoBudget::from_bytes(&bytes))
    }

    /// Waits until the process has ended (or `deadline`: [`Error::TimedOut`]) and returns its
    /// final information.
    pub fn wait_terminated(&self, deadline: i64) -> Result<InfoProcess, Error> {
        self.0.wait_one(Signals::TERMINATED, deadline)?;
        self.info()
    }
}

/// Reading [`InfoProcess`] fields as the contract's enums.
pub trait InfoProcessExt {
    /// The life stage, if known.
    fn process_state(&self) -> Option<ProcessState>;
    /// How the process ended; `None` while it runs.
    fn reason(&self) -> Option<ExitReason>;
    /// Whether it ended by exiting with code 0.
    fn succeeded(&self) -> bool;
    /// How it ended, for messages: `exited with code 0`, `ended: trapped (code -1)`,
    /// `has not ended`.
    fn describe(&self) -> String;
}

impl InfoProcessExt for InfoProcess {
    fn process_state(&self) -> Option<ProcessState> {
        match self.state {
            0 => Some(ProcessState::Created),
            1 => Some(ProcessState::Running),
            2 => Some(ProcessState::Ended),
            _ => None,
        }
    }

    fn reason(&self) -> Option<ExitReason> {
        ExitReason::from_raw(self.exit_reason)
    }

    fn succeeded(&self) -> bool {
        self.reason() == Some(ExitReason::Exited) && self.exit_code == 0
    }

    fn describe(&self) -> String {
        match self.reason() {
            Some(ExitReason::Exited) => format!("exited with code {}", self.exit_code),
            Some(reason) => format!("ended: {} (code {})", reason.word(), self.exit_code),
            None if self.exit_reason == 0 => "has not ended".to_owned(),
            None => format!("ended: reason {} (code {})", self.exit_reason, self.exit_code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_process_ext() {
        let mut info = InfoProcess {
            state: 2,
            exit_code: 0,
            exit_reason: ExitReason::Exited as u32,
            threads: 0,
            memory_bytes: 0,
            cpu_ns: 0,
        };
        assert_eq!(info.process_state(), Some(ProcessState::Ended));
        assert!(info.succeeded());
        assert_eq!(info.describe(), "exited with code 0");
        info.exit_code = 3;
        assert!(!info.succeeded());
        info.exit_reason = ExitReason::Trapped as u32;
        info.exit_code = -1;
        assert_eq!(info.reason(), Some(ExitReason::Trapped));
        assert_eq!(info.describe(), "ended: trapped (code -1)");
        info.exit_reason = 0;
        assert_eq!(info.reason(), None);
        assert_eq!(info.describe(), "has not ended");
    }
}
