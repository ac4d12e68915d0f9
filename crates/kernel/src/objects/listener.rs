//! Listeners and connectors: the network as capabilities.
//!
//! A listener holds connections, each a socket, until a process accepts them; a connector is
//! the capability to open connections to one place: a listener of the kernel's (made with
//! `listener_create`), or one address on the host's network, which the host names when it
//! grants the connector. The host feeds the listeners it grants (a TCP port) with
//! [`Listener::poll_offer`]. A process with neither has no network: there is no ambient
//! authority.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};

use nebulet_abi::{Error, LISTENER_BACKLOG, Signals};

use crate::objects::socket::SocketEnd;
use crate::platform::BoxFuture;
use crate::wait::{SignalCell, WaitQueue};

#[derive(Default)]
struct Backlog {
    queue: VecDeque<Arc<SocketEnd>>,
    /// No more connections will come (the host's listening socket failed or was closed).
    closed: bool,
    /// The host's tasks waiting for room in the backlog.
    offers: Vec<Waker>,
}

/// Where connections wait to be accepted.
pub struct Listener {
    pub(crate) koid: u64,
    backlog: crate::sync::Mutex<Backlog>,
    /// User signals and the queue woken on any change.
    cell: SignalCell,
    /// Asserts PEER_CLOSED for the connectors when the listener goes.
    gone: Arc<SignalCell>,
}

impl core::fmt::Debug for Listener {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("Listener").field("koid", &self.koid).finish()
    }
}

impl Listener {
    /// An empty listener.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            koid: super::new_koid(),
            backlog: crate::sync::Mutex::new(Backlog::default()),
            cell: SignalCell::default(),
            gone: Arc::new(SignalCell::default()),
        })
    }

    pub(crate) fn signals(&self) -> Signals {
        let backlog = self.backlog.lock();
        let mut signals = self.cell.get();
        if !backlog.queue.is_empty() {
            signals |= Signals::READABLE;
        } else if backlog.closed {
            signals |= Signals::PEER_CLOSED;
        }
        signals
    }

    pub(crate) fn wait_queue(&self) -> &WaitQueue {
        self.cell.queue()
    }

    pub(crate) fn update_user_signals(&self, clear: Signals, set: Signals) {
        self.cell.update(clear, set);
    }

    /// The first connection waiting; `ERR_SHOULD_WAIT` if none, `ERR_PEER_CLOSED` if none will
    /// come.
    pub(crate) fn accept(&self) -> Result<Arc<SocketEnd>, Error> {
        let (socket, offers) = {
            let mut backlog = self.backlog.lock();
            let Some(socket) = backlog.queue.pop_front() else {
                return Err(if backlog.closed { Error::PeerClosed } else { Error::ShouldWait });
            };
            (socket, core::mem::take(&mut backlog.offers))
        };
        offers.into_iter().for_each(Waker::wake);
        Ok(socket)
    }

    /// Queues a connection, or gives it back: `ERR_SHOULD_WAIT` while the backlog is full,
    /// `ERR_PEER_CLOSED` once the listener is closed.
    pub(crate) fn offer(&self, socket: Arc<SocketEnd>) -> Result<(), (Error, Arc<SocketEnd>)> {
        {
            let mut backlog = self.backlog.lock();
            if backlog.closed {
                return Err((Error::PeerClosed, socket));
            }
            if backlog.queue.len() >= LISTENER_BACKLOG as usize {
                return Err((Error::ShouldWait, socket));
            }
            backlog.queue.push_back(socket);
        }
        self.cell.queue().wake_all();
        Ok(())
    }

    /// For the host: queues the connection in `socket` once the backlog has room. `false` if
    /// the listener was closed (the connection is then dropped).
    pub fn poll_offer(
        &self,
        context: &mut Context<'_>,
        socket: &mut Option<Arc<SocketEnd>>,
    ) -> Poll<bool> {
        let Some(connection) = socket.take() else { return Poll::Ready(true) };
        match self.offer(connection) {
            Ok(()) => Poll::Ready(true),
            Err((Error::ShouldWait, connection)) => {
                *socket = Some(connection);
                let mut backlog = self.backlog.lock();
                if backlog.queue.len() < LISTENER_BACKLOG as usize {
                    // Room was made meanwhile: try again at once.
                    drop(backlog);
                    context.waker().wake_by_ref();
                } else {
                    backlog.offers.push(context.waker().clone());
                }
                Poll::Pending
            }
            Err(_) => Poll::Ready(false),
        }
    }

    /// For the host: no more connections will come; processes see PEER_CLOSED once they have
    /// accepted those already queued.
    pub fn close(&self) {
        self.backlog.lock().closed = true;
        self.cell.queue().wake_all();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.gone.update(Signals::NONE, Signals::PEER_CLOSED);
    }
}

/// How the host opens a connection for a connector it granted: to the one address it names.
pub trait Connect: Send + Sync + core::fmt::Debug {
    /// Connects; the socket's other end is bridged to the connection. `ERR_IO` if it failed.
    fn connect(&self) -> BoxFuture<Result<Arc<SocketEnd>, Error>>;
}

/// Where a connector's connections go.
#[derive(Debug)]
enum Destination {
    /// A listener of the kernel's.
    Local { listener: Weak<Listener>, gone: Arc<SignalCell> },
    /// An address on the host's network.
    Host(Arc<dyn Connect>),
}

/// The capability to open connections to one place.
#[derive(Debug)]
pub struct Connector {
    pub(crate) koid: u64,
    destination: Destination,
    cell: SignalCell,
}

/// A connector's way to its connection: made at once (local), or by the host (awaited).
pub(crate) enum Connection {
    Made(Arc<SocketEnd>),
    Host(BoxFuture<Result<Arc<SocketEnd>, Error>>),
}

impl Connector {
    /// A connector to `listener`.
    pub(crate) fn local(listener: &Arc<Listener>) -> Arc<Self> {
        let destination =
            Destination::Local { listener: Arc::downgrade(listener), gone: listener.gone.clone() };
        Arc::new(Self { koid: super::new_koid(), destination, cell: SignalCell::default() })
    }

    /// A connector the host grants, to the address `connect` opens.
    pub fn host(connect: Arc<dyn Connect>) -> Arc<Self> {
        let destination = Destination::Host(connect);
        Arc::new(Self { koid: super::new_koid(), destination, cell: SignalCell::default() })
    }

    pub(crate) fn signals(&self) -> Signals {
        match &self.destination {
            Destination::Local { gone, .. } => self.cell.get() | gone.get(),
            Destination::Host(_) => self.cell.get(),
        }
    }

    /// The queue woken when its signals change: for a local connector, its listener's end
    /// (which its user signals wake too).
    pub(crate) fn wait_queue(&self) -> &WaitQueue {
        match &self.destination {
            Destination::Local { gone, .. } => gone.queue(),
            Destination::Host(_) => self.cell.queue(),
        }
    }

    pub(crate) fn update_user_signals(&self, clear: Signals, set: Signals) {
        self.cell.update(clear, set);
        if let Destination::Local { gone, .. } = &self.destination {
            gone.queue().wake_all();
        }
    }

    /// Opens a connection: a local one is queued at its listener at once (`ERR_SHOULD_WAIT`
    /// while its backlog is full, `ERR_PEER_CLOSED` if it is gone); a host one is for the host
    /// to make.
    pub(crate) fn connect(&self) -> Result<Connection, Error> {
        match &self.destination {
            Destination::Local { listener, .. } => {
                let listener = listener.upgrade().ok_or(Error::PeerClosed)?;
                let (ours, theirs) = SocketEnd::pair();
                listener.offer(theirs).map_err(|(error, _)| error)?;
                Ok(Connection::Made(ours))
            }
            Destination::Host(connect) => Ok(Connection::Host(connect.connect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_connection_is_a_socket_pair_through_the_backlog() {
        let listener = Listener::new();
        let connector = Connector::local(&listener);
        assert_eq!(listener.accept().unwrap_err(), Error::ShouldWait);
        let Ok(Connection::Made(client)) = connector.connect() else { panic!("made at once") };
        assert!(listener.signals().contains(Signals::READABLE));
        let server = listener.accept().unwrap();
        client.write(b"ping", None).unwrap();
        let mut buffer = [0u8; 4];
        assert_eq!(server.read(&mut buffer), Ok(4));
        assert!(!listener.signals().contains(Signals::READABLE));
    }

    #[test]
    fn the_backlog_is_bounded_and_a_gone_listener_refuses() {
        let listener = Listener::new();
        let connector = Connector::local(&listener);
        let clients: Vec<_> = (0..LISTENER_BACKLOG).map(|_| connector.connect().unwrap()).collect();
        assert_eq!(connector.connect().err(), Some(Error::ShouldWait));
        drop(listener.accept().unwrap());
        assert!(connector.connect().is_ok());
        assert!(!connector.signals().contains(Signals::PEER_CLOSED));
        drop(listener);
        assert!(connector.signals().contains(Signals::PEER_CLOSED));
        assert_eq!(connector.connect().err(), Some(Error::PeerClosed));
        drop(clients);
    }

    #[test]
    fn a_closed_listener_gives_what_it_holds_then_peer_closed() {
        let listener = Listener::new();
        let mut socket = Some(SocketEnd::pair().0);
        let waker = Waker::noop();
        let mut context = Context::from_waker(waker);
        assert_eq!(listener.poll_offer(&mut context, &mut socket), Poll::Ready(true));
        listener.close();
        assert!(listener.signals().contains(Signals::READABLE));
        assert!(listener.accept().is_ok());
        assert_eq!(listener.signals(), Signals::PEER_CLOSED);
        assert_eq!(listener.accept().unwrap_err(), Error::PeerClosed);
        let mut another = Some(SocketEnd::pair().0);
        assert_eq!(listener.poll_offer(&mut context, &mut another), Poll::Ready(false));
    }
}
