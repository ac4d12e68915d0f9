//! COM1 (0x3F8), 115200 8N1, polled. `print!`/`println!` hold a lock with interrupts off so lines
//! do not interleave; fault paths write through `Serial` directly (never blocking on the lock).

use core::fmt::{self, Write};

use x86_64::instructions::interrupts::without_interrupts;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

fn outb(port: u16, value: u8) {
    // SAFETY: COM1's registers; writing them has no effect on memory.
    unsafe { Port::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: COM1's registers; reading them has no effect on memory.
    unsafe { Port::new(port).read() }
}

pub fn init() {
    outb(COM1 + 1, 0x00); // no UART interrupts
    outb(COM1 + 3, 0x80); // DLAB on: divisor follows
    outb(COM1, 0x01); // divisor 1: 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8 bits, no parity, one stop bit
    outb(COM1 + 2, 0xC7); // FIFOs on and cleared
    outb(COM1 + 4, 0x03); // DTR, RTS
}

/// A lock-free writer to COM1 (for panics and exception handlers).
#[derive(Debug)]
pub struct Serial;

fn put(bytes: &[u8]) {
    for &byte in bytes {
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        put(text.as_bytes());
        Ok(())
    }
}

/// Writes bytes as they are (a process's console output), under the line lock.
pub fn write_bytes(bytes: &[u8]) {
    without_interrupts(|| {
        let _line = LOCK.lock();
        put(bytes);
    });
}

#[doc(hidden)]
pub fn _print(arguments: fmt::Arguments) {
    without_interrupts(|| {
        let _line = LOCK.lock();
        let _ = Serial.write_fmt(arguments);
    });
}

#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => { $crate::serial::_print(format_args!($($argument)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($argument:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($argument)*))) };
}
