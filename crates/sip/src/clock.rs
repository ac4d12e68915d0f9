//! The monotonic clock, deadlines and sleeping.
//!
//! Times and deadlines are `i64` nanoseconds since boot on the monotonic clock;
//! [`DEADLINE_INFINITE`] (`i64::MAX`) never passes, a deadline in the past means "poll once".

use core::time::Duration;

use nebulet_abi::{DEADLINE_INFINITE, Error};

use crate::sys;

/// Nanoseconds since boot.
pub fn monotonic() -> i64 {
    sys::clock_monotonic()
}

/// The deadline `duration` from now (saturating at [`DEADLINE_INFINITE`]).
pub fn deadline_after(duration: Duration) -> i64 {
    deadline_from(monotonic(), duration)
}

/// `now + duration`, saturating at [`DEADLINE_INFINITE`].
fn deadline_from(now: i64, duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).map_or(DEADLINE_INFINITE, |nanos| now.saturating_add(nanos))
}

/// Blocks the calling thread until `deadline`.
pub fn sleep_until(deadline: i64) -> Result<(), Error> {
    sys::nanosleep(deadline)
}

/// Blocks the calling thread for `duration`.
pub fn sleep(duration: Duration) -> Result<(), Error> {
    sleep_until(deadline_after(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_from(5, Duration::from_nanos(7)), 12);
        assert_eq!(deadline_from(5, Duration::MAX), DEADLINE_INFINITE);
        assert_eq!(deadline_from(i64::MAX - 1, Duration::from_secs(1)), DEADLINE_INFINITE);
    }
}
