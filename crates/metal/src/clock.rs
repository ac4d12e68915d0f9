//! A monotonic clock in nanoseconds from the TSC, calibrated at boot against PIT channel 2.
//! Time 0 is the TSC read by the first instruction of the kernel (`boot::entry_tsc`).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use crate::boot;

/// Nanoseconds per TSC tick, as a 32.32 fixed-point number (0 before `init`).
static NS_PER_TSC_TICK: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;
const CALIBRATION_MS: u64 = 10;

pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency over `CALIBRATION_MS` of PIT channel 2 (one-shot, polled; the
/// speaker stays off). Must run before the clock is used; interrupts may be on or off.
pub fn init() {
    let count = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: port 0x61 (PIT gate / speaker) and PIT channel 2; touches no memory.
    let (start, end) = unsafe {
        let mut control = Port::<u8>::new(0x61);
        let gate = (control.read() & !0x02) | 0x01; // gate 2 on, speaker off
        control.write(gate);
        Port::<u8>::new(0x43).write(0xB0); // channel 2, lobyte/hibyte, mode 0, binary
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8); // counting starts now
        let start = rdtsc();
        while control.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        (start, rdtsc())
    };
    let hz = (end - start) * 1000 / CALIBRATION_MS;
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_PER_TSC_TICK
        .store((1_000_000_000u128 << 32).div_ceil(u128::from(hz)) as u64, Ordering::Relaxed);
}

/// The TSC frequency measured by `init`.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a TSC value to nanoseconds since boot.
pub fn tsc_to_ns(tsc: u64) -> u64 {
    let ticks = tsc.saturating_sub(boot::entry_tsc());
    ((u128::from(ticks) * u128::from(NS_PER_TSC_TICK.load(Ordering::Relaxed))) >> 32) as u64
}

/// Nanoseconds since the kernel's first instruction; monotonic (0 before `init`).
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc())
}
