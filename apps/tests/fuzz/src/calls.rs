//! The `nebulet` calls of the fuzzer: one random call of `nebulet_abi::calls::CALLS` (all but
//! `process_exit`) with random arguments, and what it keeps of the handles a call makes.

use nebulet_abi::layout::WaitItem;
use nebulet_abi::{Limit, ObjectType};
use nebulet_raw as raw;

use crate::scratch::PAGE;
use crate::{Fuzzer, MILLISECOND, TEMPLATES, waker};

impl Fuzzer {
    /// Calls `name` of `CALLS` with random arguments; its status.
    pub(crate) fn dispatch(&mut self, name: &str) -> i32 {
        match name {
            "handle_close" => {
                let handle = self.handle();
                self.note(&[handle.into()]);
                raw::handle_close(handle)
            }
            "handle_duplicate" | "handle_replace" => {
                let (handle, rights, out) = (self.handle(), self.rights(), self.writable(4, false));
                self.note(&[handle.into(), rights.into(), out.into()]);
                let status = if name == "handle_duplicate" {
                    raw::handle_duplicate(handle, rights, out)
                } else {
                    raw::handle_replace(handle, rights, out)
                };
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "object_wait_one" => {
                let (handle, signals, deadline) = (self.handle(), self.signals(), self.deadline());
                let observed = self.writable(4, true);
                self.note(&[handle.into(), signals.into(), deadline, observed.into()]);
                raw::object_wait_one(handle, signals, deadline, observed)
            }
            "object_wait_many" => {
                let count = match self.random.weighted(&[70, 15, 15]) {
                    0 => self.random.below32(9),
                    1 => 60 + self.random.below32(10),
                    _ => self.random.u32(),
                };
                let items = if count <= 80 && self.random.percent(70) {
                    let address = self.scratch_place(count * WaitItem::SIZE as u32);
                    for item in 0..count {
                        let bytes = WaitItem {
                            handle: self.handle(),
                            wait_for: self.signals(),
                            pending: 0,
                        }
                        .to_bytes();
                        self.scratch.write(address + item * WaitItem::SIZE as u32, &bytes);
                    }
                    address
                } else {
                    self.writable(count.saturating_mul(WaitItem::SIZE as u32), true)
                };
                let deadline = self.deadline();
                self.note(&[items.into(), count.into(), deadline]);
                raw::object_wait_many(items, count, deadline)
            }
            "object_signal" => {
                let (handle, clear, set) = (self.handle(), self.signals(), self.signals());
                self.note(&[handle.into(), clear.into(), set.into()]);
                raw::object_signal(handle, clear, set)
            }
            "object_get_info" => {
                let handle = self.handle();
                let topic = match self.random.weighted(&[40, 40, 10, 10]) {
                    0 => 1,
                    1 => 2,
                    2 => self.random.below32(5),
                    _ => self.random.u32(),
                };
                let length = match self.random.weighted(&[50, 30, 20]) {
                    0 => [16, 32][self.random.below(2) as usize],
                    1 => self.random.below32(40),
                    _ => self.length(),
                };
                let buffer = self.writable(length.min(32), true);
                let actual = self.writable(4, true);
                self.note(&[
                    handle.into(),
                    topic.into(),
                    buffer.into(),
                    length.into(),
                    actual.into(),
                ]);
                raw::object_get_info(handle, topic, buffer, length, actual)
            }
            "channel_create" => {
                let (first, second) = (self.writable(4, false), self.writable(4, false));
                self.note(&[first.into(), second.into()]);
                let status = raw::channel_create(first, second);
                if status == 0 {
                    // Read both before either goes back into the pool's bookkeeping.
                    let (one, other) = (self.read_scratch(first), self.read_scratch(second));
                    self.harvest(one);
                    self.harvest(other);
                }
                status
            }
            "channel_write" => {
                let handle = self.handle_of(ObjectType::Channel, 60);
                let (bytes, count) = if self.random.percent(70) {
                    let count = self.random.below32(512);
                    (self.scratch_place(count), count)
                } else {
                    (self.readable(), self.length())
                };
                let handle_count = match self.random.weighted(&[50, 30, 10, 10]) {
                    0 => 0,
                    1 => 1 + self.random.below32(4),
                    2 => 60 + self.random.below32(8),
                    _ => self.random.u32(),
                };
                // The handles move: the array is always the fuzzer's own (built from the pool,
                // never a kept handle) or outside memory. An array read from anywhere in its
                // memory would send its keepers and copies away.
                let handles = if handle_count <= 80 && self.random.percent(80) {
                    self.handle_array(handle_count)
                } else {
                    self.scratch.end() + self.random.below32(u32::MAX - self.scratch.end())
                };
                self.note(&[
                    handle.into(),
                    bytes.into(),
                    count.into(),
                    handles.into(),
                    handle_count.into(),
                ]);
                raw::channel_write(handle, bytes, count, handles, handle_count)
            }
            "channel_read" => {
                let handle = self.handle_of(ObjectType::Channel, 60);
                // Mostly reads that fit the scratch page, to receive messages and handles.
                let fitting = self.random.percent(60);
                let capacity = if fitting {
                    [0, 4, 64, 512, 65_536][self.random.below(5) as usize]
                } else {
                    self.length()
                };
                let bytes = if fitting {
                    self.scratch_place(capacity)
                } else {
                    self.writable(capacity.min(65_536), true)
                };
                let handle_capacity = match self.random.weighted(&[40, 40, 20]) {
                    0 => 0,
                    1 => 1 + self.random.below32(64),
                    _ if fitting => self.random.below32(65),
                    _ => self.random.u32(),
                };
                // Zeroed first, so the handles it receives can be told from old bytes.
                let zeroed = handle_capacity <= 64 && (fitting || self.random.percent(80));
                let handles = if zeroed {
                    let address = self.scratch_place(handle_capacity * 4);
                    self.scratch.zero(address, handle_capacity * 4);
                    address
                } else {
                    self.writable(handle_capacity.saturating_mul(4).min(256), false)
                };
                let (actual_bytes, actual_handles) = if fitting {
                    (self.scratch_place(4), self.scratch_place(4))
                } else {
                    (self.writable(4, true), self.writable(4, true))
                };
                self.note(&[
                    handle.into(),
                    bytes.into(),
                    capacity.into(),
                    handles.into(),
                    handle_capacity.into(),
                    actual_bytes.into(),
                    actual_handles.into(),
                ]);
                let status = raw::channel_read(
                    handle,
                    bytes,
                    capacity,
                    handles,
                    handle_capacity,
                    actual_bytes,
                    actual_handles,
                );
                if status == 0 && zeroed {
                    // Every handle it received.
                    for index in 0..handle_capacity {
                        let address = handles.wrapping_add(index * 4);
                        if self.scratch.contains(address, 4) {
                            let handle = self.scratch.read_u32(address);
                            self.harvest(handle);
                        }
                    }
                }
                status
            }
            "socket_create" | "listener_create" => {
                let options = if self.random.percent(85) { 0 } else { self.random.u32() };
                let (first, second) = (self.writable(4, false), self.writable(4, false));
                let status = if name == "socket_create" {
                    self.note(&[options.into(), first.into(), second.into()]);
                    raw::socket_create(options, first, second)
                } else {
                    self.note(&[first.into(), second.into()]);
                    raw::listener_create(first, second)
                };
                if status == 0 {
                    let (one, other) = (self.read_scratch(first), self.read_scratch(second));
                    self.harvest(one);
                    self.harvest(other);
                }
                status
            }
            "socket_write" | "socket_read" => {
                let handle = self.handle_of(ObjectType::Socket, 70);
                let length = match self.random.weighted(&[70, 20, 10]) {
                    0 => self.random.below32(PAGE / 2),
                    1 => 65_536 + self.random.below32(2),
                    _ => self.length(),
                };
                let bytes = if length <= PAGE / 2 && self.random.percent(80) {
                    self.scratch_place(length)
                } else if name == "socket_write" {
                    self.readable()
                } else {
                    self.writable(length.min(65_536), true)
                };
                let actual = self.writable(4, true);
                self.note(&[handle.into(), bytes.into(), length.into(), actual.into()]);
                if name == "socket_write" {
                    raw::socket_write(handle, bytes, length, actual)
                } else {
                    raw::socket_read(handle, bytes, length, actual)
                }
            }
            "socket_shutdown" => {
                let handle = self.handle_of(ObjectType::Socket, 70);
                let options = match self.random.weighted(&[80, 20]) {
                    0 => 1 + self.random.below32(3),
                    _ => self.random.u32(),
                };
                self.note(&[handle.into(), options.into()]);
                raw::socket_shutdown(handle, options)
            }
            "listener_accept" | "connector_connect" => {
                let kind =
                    if name == "listener_accept" { ObjectType::Listener } else { ObjectType::Connector };
                let handle = self.handle_of(kind, 70);
                let out = self.writable(4, false);
                self.note(&[handle.into(), out.into()]);
                let status = if name == "listener_accept" {
                    raw::listener_accept(handle, out)
                } else {
                    raw::connector_connect(handle, out)
                };
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "event_create" | "timer_create" => {
                let out = self.writable(4, false);
                self.note(&[out.into()]);
                let status = if name == "event_create" {
                    raw::event_create(out)
                } else {
                    raw::timer_create(out)
                };
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "timer_set" => {
                let handle = self.handle_of(ObjectType::Timer, 50);
                let deadline = if self.random.percent(70) {
                    self.deadline()
                } else {
                    self.random.next() as i64
                };
                self.note(&[handle.into(), deadline]);
                raw::timer_set(handle, deadline)
            }
            "timer_cancel" => {
                let handle = self.handle_of(ObjectType::Timer, 50);
                self.note(&[handle.into()]);
                raw::timer_cancel(handle)
            }
            "clock_monotonic" => {
                self.note(&[]);
                let now = raw::clock_monotonic();
                assert!(
                    now >= self.last_clock,
                    "the clock went back: {} after {}",
                    now,
                    self.last_clock
                );
                self.last_clock = now;
                0
            }
            "nanosleep" => {
                let deadline = self.deadline();
                self.note(&[deadline]);
                raw::nanosleep(deadline)
            }
            "module_compile" => {
                let (bytes, length) = self.module_bytes();
                let out = self.writable(4, false);
                self.note(&[bytes.into(), length.into(), out.into()]);
                let status = raw::module_compile(bytes, length, out);
                if status == 0 {
                    self.harvest_at(out);
                }
                status
            }
            "process_create" => {
                let module = if self.random.percent(30) {
                    self.templates[self.random.below(TEMPLATES.len() as u64) as usize]
                } else {
                    self.handle_of(ObjectType::Module, 40)
                };
                let (name, name_length) = self.name();
                let out = self.writable(4, false);
                self.note(&[module.into(), name.into(), name_length.into(), out.into()]);
                let status = raw::process_create(module, name, name_length, out);
                if status == 0 {
                    let process = self.read_scratch(out);
                    assert_ne!(process, 0, "process_create wrote no handle");
                    self.keep(process);
                    self.harvest(process);
                }
                status
            }
            "process_create_with" => {
                let module = if self.random.percent(30) {
                    self.templates[self.random.below(TEMPLATES.len() as u64) as usize]
                } else {
                    self.handle_of(ObjectType::Module, 40)
                };
                let (name, name_length) = self.name();
                // Mostly no option or unknown bits; rarely a domain, which costs a host process
                // where the platform has domains.
                let options = match self.random.below(20) {
                    0 => nebulet_abi::PROCESS_CREATE_ISOLATED,
                    1..=9 => 0,
                    _ => self.random.below(u64::from(u32::MAX)) as u32,
                };
                let out = self.writable(4, false);
                self.note(&[module.into(), name.into(), name_length.into(), options.into(), out.into()]);
                let status = raw::process_create_with(module, name, name_length, options, out);
                if status == 0 {
                    let process = self.read_scratch(out);
                    assert_ne!(process, 0, "process_create_with wrote no handle");
                    self.keep(process);
                    self.harvest(process);
                }
                status
            }
            "process_start" => {
                let process = self.handle_of(ObjectType::Process, 30);
                let bootstrap = if self.random.percent(50) { 0 } else { self.handle() };
                self.note(&[process.into(), bootstrap.into()]);
                raw::process_start(process, bootstrap)
            }
            "process_bootstrap" => {
                let out = self.writable(4, false);
                self.note(&[out.into()]);
                let status = raw::process_bootstrap(out);
                if status == 0 {
                    // A copy's bootstrap handle is its channel to the first process.
                    let handle = self.read_scratch(out);
                    if self.role.is_copy() && self.control == 0 {
                        self.take_control(handle);
                    } else {
                        self.harvest(handle);
                    }
                }
                status
            }
            "process_kill" => {
                // Never its own handle: it holds none.
                let process = self.handle_of(ObjectType::Process, 50);
                self.note(&[process.into()]);
                raw::process_kill(process)
            }
            "process_set_limit" => {
                let process = self.handle_of(ObjectType::Process, 50);
                let limit = match self.random.weighted(&[80, 10, 10]) {
                    0 => Limit::ALL[self.random.below(Limit::ALL.len() as u64) as usize] as u32,
                    1 => [0, 6][self.random.below(2) as usize],
                    _ => self.random.u32(),
                };
                let value = self.limit_value();
                self.note(&[process.into(), limit.into(), value]);
                raw::process_set_limit(process, limit, value)
            }
            "thread_yield" => {
                self.note(&[]);
                raw::thread_yield()
            }
            "futex_wait" if self.random.percent(20) => {
                // Steered: a value that matches, and the waker thread asked to wake us.
                let address = self.scratch.base + (self.random.below32(PAGE) & !3);
                let expected = self.scratch.read_u32(address);
                let deadline = raw::clock_monotonic() + 100 * MILLISECOND;
                self.note(&[address.into(), expected.into(), deadline]);
                waker::request(address);
                let status = raw::futex_wait(address, expected, deadline);
                waker::withdraw();
                status
            }
            "futex_wait" => {
                let address = if self.random.percent(70) {
                    let address = self.scratch.base + self.random.below32(PAGE);
                    if self.random.percent(80) { address & !3 } else { address }
                } else {
                    self.readable()
                };
                let expected = if self.scratch.contains(address, 4) && self.random.percent(50) {
                    self.scratch.read_u32(address)
                } else {
                    self.random.u32() & 3
                };
                let deadline = self.deadline();
                self.note(&[address.into(), expected.into(), deadline]);
                raw::futex_wait(address, expected, deadline)
            }
            "futex_wake" => {
                let address = if self.random.percent(50) {
                    self.scratch.base + (self.random.below32(PAGE) & !3)
                } else {
                    self.readable()
                };
                let count = if self.random.percent(50) {
                    self.random.below32(4)
                } else {
                    self.random.u32()
                };
                let woken = self.writable(4, true);
                self.note(&[address.into(), count.into(), woken.into()]);
                raw::futex_wake(address, count, woken)
            }
            "sched_lock" => {
                self.note(&[]);
                raw::sched_lock()
            }
            "sched_unlock" => {
                self.note(&[]);
                raw::sched_unlock()
            }
            "watchdog_setup" => {
                let interval = self.interval();
                self.note(&[interval]);
                raw::watchdog_setup(interval)
            }
            "watchdog_alive" => {
                self.note(&[]);
                raw::watchdog_alive()
            }
            "random_fill" | "cprng_fill" => {
                let length = self.length();
                let buffer = self.writable(length.min(65_536), true);
                self.note(&[buffer.into(), length.into()]);
                if name == "random_fill" {
                    raw::random_fill(buffer, length)
                } else {
                    raw::cprng_fill(buffer, length)
                }
            }
            "debug_write" => {
                // Valid writes are one dot at most: the console is not for noise.
                let (buffer, length) = if self.random.percent(50) {
                    let (address, _) = self.scratch_text(b".");
                    (address, self.random.below32(2))
                } else {
                    let buffer = self.writable(u32::MAX, false);
                    let length = self.length();
                    if self.scratch.contains(buffer, length) {
                        (buffer, 0)
                    } else {
                        (buffer, length)
                    }
                };
                self.note(&[buffer.into(), length.into()]);
                raw::debug_write(buffer, length)
            }
            "service_register" | "service_connect" => {
                let (name_address, name_length) = self.name();
                let channel = self.handle_of(ObjectType::Channel, 50);
                self.note(&[name_address.into(), name_length.into(), channel.into()]);
                if name == "service_register" {
                    raw::service_register(name_address, name_length, channel)
                } else {
                    raw::service_connect(name_address, name_length, channel)
                }
            }
            other => unreachable!("`{other}` is checked against KNOWN at start"),
        }
    }

    /// The u32 a call wrote at `address` (0 if it is not in the scratch page).
    pub(crate) fn read_scratch(&self, address: u32) -> u32 {
        if self.scratch.contains(address, 4) { self.scratch.read_u32(address) } else { 0 }
    }
}

/// The calls the fuzzer knows how to call.
pub(crate) const KNOWN: &[&str] = &[
    "handle_close",
    "handle_duplicate",
    "handle_replace",
    "object_wait_one",
    "object_wait_many",
    "object_signal",
    "object_get_info",
    "channel_create",
    "channel_write",
    "channel_read",
    "socket_create",
    "socket_write",
    "socket_read",
    "socket_shutdown",
    "listener_create",
    "listener_accept",
    "connector_connect",
    "event_create",
    "timer_create",
    "timer_set",
    "timer_cancel",
    "clock_monotonic",
    "nanosleep",
    "module_compile",
    "process_create",
    "process_create_with",
    "process_start",
    "process_bootstrap",
    "process_kill",
    "process_set_limit",
    "thread_yield",
    "futex_wait",
    "futex_wake",
    "sched_lock",
    "sched_unlock",
    "watchdog_setup",
    "watchdog_alive",
    "random_fill",
    "cprng_fill",
    "debug_write",
    "service_register",
    "service_connect",
];
