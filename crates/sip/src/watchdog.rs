//! The process watchdog: proof of life, or the kernel ends the process.
//!
//! A process arms its watchdog with [`setup`] and an interval; from then on it must call
//! [`alive`] at least once within every interval, or the kernel kills it with reason
//! [`ExitReason::Watchdog`](nebulet_abi::ExitReason::Watchdog) ("watchdog", exit code -1). That
//! holds whatever the process is doing: spinning in a loop without calls, waiting on a channel
//! or sleeping. A supervisor (such as `init` with a `restart=` option in the manifest) can then
//! start it afresh. The watchdog is per process: any thread's [`alive`] counts.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use sip::watchdog;
//!
//! watchdog::setup(Duration::from_millis(100))?;
//! loop {
//!     // ... one step of work, well under 100 ms ...
//!     watchdog::alive()?;
//! #   break;
//! }
//! watchdog::disarm();
//! # Ok::<(), sip::Error>(())
//! ```

use core::time::Duration;

use nebulet_abi::Error;

use crate::sys;

/// The shortest interval the kernel accepts: one millisecond.
pub const MINIMUM_INTERVAL: Duration = Duration::from_millis(1);

/// Arms the watchdog: [`alive`] must now be called within every `interval`, starting now.
///
/// Calling it again replaces the interval and starts a new one. An interval longer than
/// `i64::MAX` nanoseconds (about 292 years) is taken as that.
///
/// Errors: [`Error::InvalidArgs`] if `interval` is shorter than [`MINIMUM_INTERVAL`] (to turn
/// the watchdog off, use [`disarm`]).
///
/// ```no_run
/// use std::time::Duration;
///
/// // From now on, prove you are alive at least every half second.
/// sip::watchdog::setup(Duration::from_millis(500))?;
/// # Ok::<(), sip::Error>(())
/// ```
pub fn setup(interval: Duration) -> Result<(), Error> {
    if interval < MINIMUM_INTERVAL {
        return Err(Error::InvalidArgs);
    }
    sys::watchdog_setup(i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX))
}

/// Turns the watchdog off: the process is no longer killed for not calling [`alive`]. Does
/// nothing if it is not armed (or off Nebulet).
///
/// ```no_run
/// use std::time::Duration;
///
/// sip::watchdog::setup(Duration::from_millis(50))?;
/// // ... work that proves it is alive ...
/// sip::watchdog::disarm(); // about to wait for input for as long as it takes
/// # Ok::<(), sip::Error>(())
/// ```
pub fn disarm() {
    // Disarming cannot fail on Nebulet; off Nebulet there is no watchdog.
    let _ = sys::watchdog_setup(0);
}

/// Proves the process is alive: starts a new interval of the armed watchdog.
///
/// Errors: [`Error::BadState`] if the watchdog is not armed.
///
/// ```no_run
/// use std::time::Duration;
///
/// sip::watchdog::setup(Duration::from_millis(50))?;
/// for step in 0..10 {
///     println!("step {step}");
///     sip::sleep(Duration::from_millis(10))?;
///     sip::watchdog::alive()?;
/// }
/// # Ok::<(), sip::Error>(())
/// ```
pub fn alive() -> Result<(), Error> {
    sys::watchdog_alive()
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    #[test]
    fn short_intervals_are_refused_before_the_call() {
        assert_eq!(setup(Duration::ZERO), Err(Error::InvalidArgs));
        assert_eq!(setup(Duration::from_micros(999)), Err(Error::InvalidArgs));
    }

    #[test]
    fn off_nebulet_calls_fail_cleanly() {
        assert_eq!(setup(MINIMUM_INTERVAL), Err(Error::NotSupported));
        assert_eq!(setup(Duration::MAX), Err(Error::NotSupported));
        assert_eq!(alive(), Err(Error::NotSupported));
        disarm();
    }
}
