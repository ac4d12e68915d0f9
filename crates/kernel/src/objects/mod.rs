//! Kernel objects: what a handle refers to, and what every kind of object has in common.

pub(crate) mod channel;
pub(crate) mod event;
pub mod listener;
pub(crate) mod module;
pub(crate) mod process;
pub mod socket;
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
    Socket(Arc<socket::SocketEnd>),
    Listener(Arc<listener::Listener>),
    Connector(Arc<listener::Connector>),
}

impl Object {
    pub(crate) fn koid(&self) -> u64 {
        match self {
            Object::Channel(endpoint) => endpoint.koid(),
            Object::Event(event) => event.koid,
            Object::Timer(timer) => timer.koid,
            Object::Module(module) => module.koid,
            Object::Process(process) => process.koid,
            Object::Socket(socket) => socket.koid(),
            Object::Listener(listener) => listener.koid,
            Object::Connector(connector) => connector.koid,
        }
    }

    pub(crate) fn object_type(&self) -> ObjectType {
        match self {
            Object::Channel(_) => ObjectType::Channel,
            Object::Event(_) => ObjectType::Event,
            Object::Timer(_) => ObjectType::Timer,
            Object::Module(_) => ObjectType::Module,
            Object::Process(_) => ObjectType::Process,
            Object::Socket(_) => ObjectType::Socket,
            Object::Listener(_) => ObjectType::Listener,
            Object::Connector(_) => ObjectType::Connector,
        }
    }

    /// Whether a handle to it can be carried into another domain (by a bridged channel).
    pub(crate) fn crosses_domains(&self) -> bool {
        matches!(self, Object::Channel(_) | Object::Socket(_))
    }

    /// The signals asserted now.
    pub(crate) fn signals(&self) -> Signals {
        match self {
            Object::Channel(endpoint) => endpoint.signals(),
            Object::Event(event) => event.signals.get(),
            Object::Timer(timer) => timer.signals.get(),
            Object::Module(module) => module.signals.get(),
            Object::Process(process) => process.signals.get(),
            Object::Socket(socket) => socket.signals(),
            Object::Listener(listener) => listener.signals(),
            Object::Connector(connector) => connector.signals(),
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
            Object::Socket(socket) => socket.wait_queue(),
            Object::Listener(listener) => listener.wait_queue(),
            Object::Connector(connector) => connector.wait_queue(),
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
            Object::Socket(socket) => socket.update_user_signals(clear, set),
            Object::Listener(listener) => listener.update_user_signals(clear, set),
            Object::Connector(connector) => connector.update_user_signals(clear, set),
        }
    }
}
