//! The fuzzer's argument generators: rights, signals, deadlines, pointers, lengths, names and
//! module bytes.

use nebulet_abi::{Rights, Signals};
use nebulet_raw as raw;

use crate::scratch::PAGE;
use crate::{Fuzzer, MILLISECOND, SECOND, SERVICE_NAMES, TEMPLATES};

impl Fuzzer {
    pub(crate) fn note(&mut self, arguments: &[i64]) {
        self.argument_count = arguments.len();
        self.arguments[..arguments.len()].copy_from_slice(arguments);
    }

    pub(crate) fn rights(&mut self) -> u32 {
        match self.random.weighted(&[30, 40, 10, 20]) {
            0 => Rights::SAME_RIGHTS.bits(),
            1 => self.random.u32() & Rights::ALL.bits(),
            2 => 0,
            _ => self.random.u32(),
        }
    }

    pub(crate) fn signals(&mut self) -> u32 {
        let known = Signals::READABLE
            | Signals::WRITABLE
            | Signals::PEER_CLOSED
            | Signals::SIGNALED
            | Signals::TERMINATED
            | Signals::USER_ALL;
        match self.random.weighted(&[60, 10, 20, 10]) {
            0 => self.random.u32() & known.bits(),
            1 => 0,
            2 => self.random.u32(),
            _ => u32::MAX,
        }
    }

    /// A deadline that passes within a millisecond (or has passed).
    pub(crate) fn deadline(&mut self) -> i64 {
        let now = raw::clock_monotonic();
        match self.random.weighted(&[40, 30, 10, 10, 5, 5]) {
            0 => 0,
            1 => now + MILLISECOND,
            2 => now + self.random.below(MILLISECOND as u64) as i64,
            3 => now - self.random.below(SECOND as u64) as i64,
            4 => i64::MIN,
            _ => -((self.random.next() >> 1) as i64),
        }
    }

    /// A pointer the kernel may write up to `size` bytes through: into the scratch page
    /// (possibly crossing the end of memory), past the end, wrapping around, or 0 (only when
    /// `zero` and `size` is at most 32: the first bytes of memory are never used).
    pub(crate) fn writable(&mut self, size: u32, zero: bool) -> u32 {
        let end = self.scratch.end();
        match self.random.weighted(&[55, 10, 10, 10, 5, 10]) {
            0 => {
                let address = self.scratch.base + self.random.below32(PAGE);
                if self.random.percent(50) { address & !3 } else { address }
            }
            1 => end - 1 - self.random.below32(16),
            2 => end + self.random.below32(64),
            3 => end + self.random.below32(u32::MAX - end),
            4 => u32::MAX - self.random.below32(16),
            _ if zero && size <= 32 => 0,
            _ => self.scratch.base + (self.random.below32(PAGE) & !3),
        }
    }

    /// A pointer the kernel only reads through: anything, including the program's own data.
    pub(crate) fn readable(&mut self) -> u32 {
        if self.random.percent(20) {
            self.random.below32(self.scratch.end())
        } else {
            self.writable(u32::MAX, true)
        }
    }

    pub(crate) fn length(&mut self) -> u32 {
        match self.random.weighted(&[15, 30, 5, 20, 10, 15, 5]) {
            0 => 0,
            1 => self.random.below32(64),
            2 => self.random.below32(4_096),
            3 => self.random.below32(65_537),
            4 => 65_536 + self.random.below32(2),
            5 => self.random.u32(),
            _ => u32::MAX,
        }
    }

    /// A place in the scratch page for `size` bytes the fuzzer writes itself.
    pub(crate) fn scratch_place(&mut self, size: u32) -> u32 {
        self.scratch.base + self.random.below32(PAGE - size + 1)
    }

    /// Text the fuzzer wrote into the scratch page: `(address, length)`.
    pub(crate) fn scratch_text(&mut self, text: &[u8]) -> (u32, u32) {
        let address = self.scratch_place(text.len() as u32);
        self.scratch.write(address, text);
        (address, text.len() as u32)
    }

    /// A name: a service name, a short valid name, random bytes, or any pointer and length.
    pub(crate) fn name(&mut self) -> (u32, u32) {
        match self.random.weighted(&[40, 20, 20, 20]) {
            0 => {
                let name = SERVICE_NAMES[self.random.below(SERVICE_NAMES.len() as u64) as usize];
                self.scratch_text(name)
            }
            1 => {
                let length = self.random.below32(80);
                let mut bytes = [b'n'; 80];
                for byte in &mut bytes[..length as usize] {
                    *byte = b'a' + self.random.below(26) as u8;
                }
                self.scratch_text(&bytes[..length as usize])
            }
            2 => {
                let length = self.random.below32(70);
                (self.scratch_place(length), length)
            }
            _ => (self.readable(), self.length()),
        }
    }

    /// Module bytes: a template's text, a wasm header and garbage, or any pointer and length.
    pub(crate) fn module_bytes(&mut self) -> (u32, u32) {
        match self.random.weighted(&[30, 20, 50]) {
            0 => {
                let source = TEMPLATES[self.random.below(TEMPLATES.len() as u64) as usize];
                self.scratch_text(source.as_bytes())
            }
            1 => {
                let length = 8 + self.random.below32(64);
                let address = self.scratch_place(length);
                self.scratch.write(address, b"\0asm\x01\0\0\0");
                (address, length)
            }
            _ => (self.readable(), self.length()),
        }
    }

    /// An array of `count` handles the fuzzer wrote into the scratch page.
    pub(crate) fn handle_array(&mut self, count: u32) -> u32 {
        let address = self.scratch_place(count * 4);
        for index in 0..count {
            let handle = self.handle();
            self.scratch.write(address + index * 4, &handle.to_le_bytes());
        }
        address
    }

    pub(crate) fn interval(&mut self) -> i64 {
        match self.random.weighted(&[40, 30, 15, 15]) {
            0 => 0,
            1 => 10 * SECOND + self.random.below(50 * SECOND as u64) as i64,
            2 => 1 + self.random.below(MILLISECOND as u64 - 1) as i64,
            _ => -((self.random.next() >> 1) as i64) - 1,
        }
    }

    pub(crate) fn limit_value(&mut self) -> i64 {
        match self.random.weighted(&[30, 20, 10, 10, 10, 20]) {
            0 => self.random.below(1 << 20) as i64,
            1 => self.random.next() as i64,
            2 => 0,
            3 => -1,
            4 => i64::MAX,
            _ => self.random.below(1 << 32) as i64,
        }
    }
}
