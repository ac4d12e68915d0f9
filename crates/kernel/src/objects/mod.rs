//! Kernel objects: what a handle refers to, and what every kind of object has in common.

pub(crate) mod channel;
pub(crate) mod event;
pub(crate) mod module;
pub(crate) mod process;
pub(crate) mod timer;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use nebulet_abi::{ObjectType, Signals};

use crate::wait::WaitQueue;

static NEXT_KOID: AtomicU64 = AtomicU64::new(1);

/// A new kernel object id: unique for the life of the program, never reused.
pub(crate) fn new_koid() -> u64 {
    NEXT_KOID.fetch_add(1, Ordering::Relaxed)
}

/// A reference to a kernel object, as held by a handle or a message.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    Channel(Arc<channel::Endpoint>),
    Event(Arc<event::Event>),
    Timer(Arc<timer::Timer>),
    Module(Arc<module::ModuleObject>),
    Process(Arc<process::Process>),
}

impl Object {
    pub(crate) fn koid(&self) -> u64 {
        match self {
            Object::Channel(endpoint) => endpoint.koid(),
            Object::Event(event) => event.koid,
            Object::Timer(timer) => timer.koid,
            Object::Module(module) => module.koid,
            Object::Process(process) => process.koid,
        }
    }

    pub(crate) fn object_type(&self) -> ObjectType {
        match self {
            Object::Channel(_) => ObjectType::Channel,
            Object::Event(_) => ObjectType::Event,
            Object::Timer(_) => ObjectType::Timer,
            Object::Module(_) => ObjectType::Module,
            Object::Process(_) => ObjectType::Process,
        }
    }

    /// The signals asserted now.
    pub(crate) fn signals(&self) -> Signals {
        match self {
            Object::Channel(endpoint) => endpoint.signals(),
            Object::Event(event) => event.signals.get(),
            Object::Timer(timer) => timer.signals.get(),
            Object::Module(module) => module.signals.get(),
            Object::Process(process) => process.signals.get(),
        }
    }

    /// The queue woken whenever the signals change.
    pub(crate) fn wait_queue(&self) -> &WaitQueue {
        match self {
            Object::Channel(endpoint) => endpoint.wait_queue(),
            Object::Event(event) => event.signals.queue(),
            Object::Timer(timer) => timer.signals.queue(),
            Object::Module(module) => module.signals.queue(),
            Object::Process(process) => process.signals.queue(),
        }
    }

    /// The signals a program may set and clear with `object_signal` on this object.
    pub(crate) fn settable_signals(&self) -> Signals {
        match self {
            Object::Event(_) => Signals::EVENT_SETTABLE,
            _ => Signals::USER_ALL,
        }
    }

    /// Clears then sets signals a program may change (checked by the caller).
    pub(crate) fn update_user_signals(&self, clear: Signals, set: Signals) {
        match self {
            Object::Channel(endpoint) => endpoint.update_user_signals(clear, set),
            Object::Event(event) => event.signals.update(clear, set),
            Object::Timer(timer) => timer.signals.update(clear, set),
            Object::Module(module) => module.signals.update(clear, set),
            Object::Process(process) => process.signals.update(clear, set),
        }
    }
}
