//! The pool of handles the fuzzer passes to calls, the keepers of the processes it creates,
//! and the handle values it picks.

use nebulet_abi::{Error, ObjectType, Rights};
use nebulet_raw as raw;
use nebulet_raw::writable;

use crate::{Fuzzer, KEEPERS, POOL, TEMPLATES};

/// The object type of a handle (0 if it is none).
pub fn kind_of(handle: u32) -> u32 {
    let mut record = [0u8; 16];
    if raw::object_get_info(handle, 1, writable(&mut record), 16, 0) != 0 {
        return 0;
    }
    u32::from_le_bytes([record[8], record[9], record[10], record[11]])
}

impl Fuzzer {
    /// A handle value: mostly from the pool, else 0, a random value or a pool value with a bit
    /// flipped, but never one of the handles the fuzzer keeps outside the pool.
    pub(crate) fn handle(&mut self) -> u32 {
        let value = match self.random.weighted(&[70, 8, 7, 5]) {
            0 => return self.pool[self.random.below(POOL as u64) as usize],
            1 => return 0,
            2 => self.random.u32(),
            _ => self.pool[self.random.below(POOL as u64) as usize] ^ (1 << self.random.below(32)),
        };
        if self.is_kept(value) { 0 } else { value }
    }

    /// Whether `value` names a handle the fuzzer keeps outside the pool: templates, keepers,
    /// its copies and their channels, or its own channel to the first process.
    fn is_kept(&self, value: u32) -> bool {
        value != 0
            && (self.templates.contains(&value)
                || self.keepers[..self.keeper_count].contains(&value)
                || self.control == value
                || self.copies.iter().any(|copy| copy.process == value || copy.control == value))
    }

    /// Often a pool handle to an object of type `kind` (if the pool has one), else any handle.
    pub(crate) fn handle_of(&mut self, kind: ObjectType, percent: u64) -> u32 {
        if self.random.percent(percent) {
            let matches = self.kinds.iter().filter(|k| **k == kind as u32).count();
            if matches > 0 {
                let pick = self.random.below(matches as u64) as usize;
                let slot = (0..POOL).filter(|slot| self.kinds[*slot] == kind as u32).nth(pick);
                if let Some(slot) = slot {
                    return self.pool[slot];
                }
            }
        }
        self.handle()
    }

    /// A new object for pool slot `slot`: a channel end, a socket end, a listener or connector,
    /// an event, a timer, a module, or an unstarted process (with its keeper).
    pub(crate) fn fresh_object(&mut self, slot: usize) -> u32 {
        let mut handle = 0u32;
        let status = match slot % 8 {
            0 | 1 | 6 | 7 => {
                let mut peer = 0u32;
                let status = match slot % 8 {
                    0 | 1 => raw::channel_create(writable(&mut handle), writable(&mut peer)),
                    6 => raw::socket_create(0, writable(&mut handle), writable(&mut peer)),
                    _ => raw::listener_create(writable(&mut handle), writable(&mut peer)),
                };
                // The other end goes to a random slot: both ends stay reachable.
                if status == 0 {
                    let other = (slot + 1 + self.random.below(POOL as u64 - 1) as usize) % POOL;
                    self.place(other, peer);
                }
                status
            }
            2 => raw::event_create(writable(&mut handle)),
            3 => raw::timer_create(writable(&mut handle)),
            4 => {
                let template = self.templates[self.random.below(TEMPLATES.len() as u64) as usize];
                raw::handle_duplicate(template, Rights::SAME_RIGHTS.bits(), writable(&mut handle))
            }
            _ => {
                let template = self.templates[self.random.below(TEMPLATES.len() as u64) as usize];
                let name = b"pool";
                let status = raw::process_create(
                    template,
                    name.as_ptr() as usize as u32,
                    name.len() as u32,
                    writable(&mut handle),
                );
                if status == 0 {
                    self.keep(handle);
                }
                status
            }
        };
        if status == 0 { handle } else { 0 }
    }

    /// Puts a new object into pool slot `slot`, closing what was there.
    pub(crate) fn renew(&mut self, slot: usize) {
        let handle = self.fresh_object(slot);
        self.place(slot, handle);
    }

    /// Puts `handle` into pool slot `slot`, closing what was there.
    pub(crate) fn place(&mut self, slot: usize, handle: u32) {
        let old = core::mem::replace(&mut self.pool[slot], handle);
        self.kinds[slot] = kind_of(handle);
        if old != handle {
            let _ = raw::handle_close(old);
        }
    }

    /// Replaces handles that are no longer valid (closed, moved into messages or processes).
    pub(crate) fn refresh_pool(&mut self) {
        for slot in 0..POOL {
            let mut record = [0u8; 16];
            let status = raw::object_get_info(self.pool[slot], 1, writable(&mut record), 16, 0);
            if status == Error::BadHandle.code() {
                self.renew(slot);
            } else if status == 0 {
                self.kinds[slot] =
                    u32::from_le_bytes([record[8], record[9], record[10], record[11]]);
            }
        }
    }

    /// Adds a handle a call made to the pool, closing the one it replaces.
    pub(crate) fn harvest(&mut self, handle: u32) {
        if handle == 0 {
            return;
        }
        let slot = self.random.below(POOL as u64) as usize;
        self.place(slot, handle);
    }

    /// Harvests the handle at `address` if the call wrote it into the scratch page.
    pub(crate) fn harvest_at(&mut self, address: u32) {
        if self.scratch.contains(address, 4) {
            let handle = self.scratch.read_u32(address);
            self.harvest(handle);
        }
    }

    /// Keeps a duplicate of a new process's handle outside the pool, so it can be killed at
    /// the end whatever the fuzzer does with the pool's; when full, kills the oldest.
    pub(crate) fn keep(&mut self, process: u32) {
        let mut keeper = 0u32;
        if raw::handle_duplicate(process, Rights::SAME_RIGHTS.bits(), writable(&mut keeper)) != 0 {
            // No room for a keeper: the process must not outlive the fuzzer.
            assert_eq!(raw::process_kill(process), 0, "killing a process without a keeper");
            return;
        }
        if self.keeper_count < KEEPERS {
            self.keepers[self.keeper_count] = keeper;
            self.keeper_count += 1;
        } else {
            let old = core::mem::replace(&mut self.keepers[self.keeper_next], keeper);
            self.keeper_next = (self.keeper_next + 1) % KEEPERS;
            assert_eq!(raw::process_kill(old), 0, "killing an old process");
            let _ = raw::handle_close(old);
        }
    }
}
