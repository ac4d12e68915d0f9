//! The wall clock: the CMOS real-time clock (UTC under QEMU), read once at boot; later readings
//! are that time plus the monotonic clock since.

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use crate::clock::now_ns;

/// Nanoseconds since 1970 at the boot reading (0: unknown).
static BOOT_REALTIME_NS: AtomicI64 = AtomicI64::new(0);
/// The monotonic clock at the boot reading.
static READ_AT_NS: AtomicU64 = AtomicU64::new(0);

fn cmos(register: u8) -> u8 {
    // SAFETY: the CMOS index and data ports; bit 7 of the index keeps NMIs disabled as the
    // firmware left them. Touches no memory.
    unsafe {
        Port::<u8>::new(0x70).write(register | 0x80);
        Port::<u8>::new(0x71).read()
    }
}

/// (second, minute, hour, day, month, year, century), as the RTC stores them.
fn read_registers() -> [u8; 7] {
    // Registers change during an update (bit 7 of status A): wait for none in progress.
    let mut waited = 0;
    while cmos(0x0A) & 0x80 != 0 && waited < 100_000 {
        waited += 1;
        core::hint::spin_loop();
    }
    [cmos(0x00), cmos(0x02), cmos(0x04), cmos(0x07), cmos(0x08), cmos(0x09), cmos(0x32)]
}

/// Reads the RTC (twice, until two readings agree) and keeps the time; without a sane reading
/// the wall clock stays at 0 (unknown). Returns the seconds since 1970, if known.
pub fn init() -> Option<i64> {
    let mut reading = read_registers();
    for _ in 0..5 {
        let again = read_registers();
        if again == reading {
            break;
        }
        reading = again;
    }
    let seconds = decode(reading, cmos(0x0B))?;
    READ_AT_NS.store(now_ns(), Ordering::Relaxed);
    BOOT_REALTIME_NS.store(seconds * 1_000_000_000, Ordering::Relaxed);
    Some(seconds)
}

/// Nanoseconds since 1970-01-01 UTC (0 if the RTC gave no sane time).
pub fn realtime_ns() -> i64 {
    let boot = BOOT_REALTIME_NS.load(Ordering::Relaxed);
    if boot == 0 {
        return 0;
    }
    let since = now_ns().saturating_sub(READ_AT_NS.load(Ordering::Relaxed));
    boot.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
}

fn decode(registers: [u8; 7], status_b: u8) -> Option<i64> {
    let binary = status_b & 0x04 != 0;
    let hours_24 = status_b & 0x02 != 0;
    let value = |byte: u8| if binary { byte } else { (byte >> 4) * 10 + (byte & 0x0F) };
    let [second, minute, hour, day, month, year, century] = registers;
    let pm = hour & 0x80 != 0;
    let mut hour = value(hour & 0x7F);
    if !hours_24 {
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (hour, true) => hour + 12,
            (hour, false) => hour,
        };
    }
    let century = match value(century) {
        century @ 19..=99 => i64::from(century),
        _ => 20,
    };
    let (second, minute, day, month) = (value(second), value(minute), value(day), value(month));
    let year = century * 100 + i64::from(value(year));
    if second > 59
        || minute > 59
        || hour > 23
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&month)
    {
        return None;
    }
    let days = days_from_civil(year, i64::from(month), i64::from(day));
    Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
