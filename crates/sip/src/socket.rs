//! Stream sockets, listeners and connectors: [`Socket`], [`Listener`], [`Connector`].

use nebulet_abi::{DEADLINE_INFINITE, Error, SOCKET_SHUTDOWN_READ, SOCKET_SHUTDOWN_WRITE, Signals};

use crate::handle::{Handle, typed_handle};
use crate::sys;

typed_handle! {
    /// One end of a stream socket: bytes both ways, in order, with a bounded buffer at each end.
    ///
    /// Signals: [`Signals::READABLE`], [`Signals::WRITABLE`], [`Signals::PEER_CLOSED`] and
    /// [`Signals::PEER_WRITE_DISABLED`].
    Socket
}

impl Socket {
    /// A connected pair of ends.
    pub fn create() -> Result<(Socket, Socket), Error> {
        let (first, second) = sys::socket_create()?;
        Ok((Socket(Handle::from_kernel(first)?), Socket(Handle::from_kernel(second)?)))
    }

    /// Writes what fits of `bytes` without waiting; how many were taken
    /// ([`Error::ShouldWait`] if none fit).
    pub fn write(&self, bytes: &[u8]) -> Result<usize, Error> {
        sys::socket_write(self.0.as_raw(), bytes)
    }

    /// Reads what is buffered, up to `buffer.len()`, without waiting; how many bytes came
    /// ([`Error::ShouldWait`] if none, [`Error::PeerClosed`] at the end of the stream).
    pub fn read(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        sys::socket_read(self.0.as_raw(), buffer)
    }

    /// Writes all of `bytes`, waiting for room as needed.
    pub fn write_all(&self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            match self.write(bytes) {
                Ok(count) => bytes = &bytes[count..],
                Err(Error::ShouldWait) => {
                    self.wait_one(Signals::WRITABLE | Signals::PEER_CLOSED, DEADLINE_INFINITE)?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Reads into `buffer`, waiting for bytes; `Ok(0)` at the end of the stream.
    pub fn read_wait(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        loop {
            match self.read(buffer) {
                Err(Error::ShouldWait) => {
                    let signals =
                        Signals::READABLE | Signals::PEER_CLOSED | Signals::PEER_WRITE_DISABLED;
                    self.wait_one(signals, DEADLINE_INFINITE)?;
                }
                Err(Error::PeerClosed) => return Ok(0),
                other => return other,
            }
        }
    }

    /// This end writes no more: the peer reads to the end of the stream.
    pub fn shutdown_write(&self) -> Result<(), Error> {
        sys::socket_shutdown(self.0.as_raw(), SOCKET_SHUTDOWN_WRITE)
    }

    /// This end reads no more: what is buffered for it is dropped.
    pub fn shutdown_read(&self) -> Result<(), Error> {
        sys::socket_shutdown(self.0.as_raw(), SOCKET_SHUTDOWN_READ)
    }
}

typed_handle! {
    /// Where connections wait to be accepted, each as a [`Socket`].
    ///
    /// Signals: [`Signals::READABLE`] while one waits, [`Signals::PEER_CLOSED`] once none will
    /// come.
    Listener
}

typed_handle! {
    /// The capability to open connections to one listener or one host address.
    Connector
}

impl Listener {
    /// A listener of the kernel's own, and a connector to it.
    pub fn create() -> Result<(Listener, Connector), Error> {
        let (listener, connector) = sys::listener_create()?;
        Ok((Listener(Handle::from_kernel(listener)?), Connector(Handle::from_kernel(connector)?)))
    }

    /// The first waiting connection, without waiting ([`Error::ShouldWait`] if none).
    pub fn accept(&self) -> Result<Socket, Error> {
        Ok(Socket(Handle::from_kernel(sys::listener_accept(self.0.as_raw())?)?))
    }

    /// The first waiting connection, waiting for one.
    pub fn accept_wait(&self) -> Result<Socket, Error> {
        loop {
            match self.accept() {
                Err(Error::ShouldWait) => {
                    self.wait_one(Signals::READABLE | Signals::PEER_CLOSED, DEADLINE_INFINITE)?;
                }
                other => return other,
            }
        }
    }
}

impl Connector {
    /// Opens a connection (for a host address, blocks until the host has connected).
    pub fn connect(&self) -> Result<Socket, Error> {
        Ok(Socket(Handle::from_kernel(sys::connector_connect(self.0.as_raw())?)?))
    }
}
