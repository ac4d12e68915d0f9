//! The host's network behind the kernel's listeners and connectors: TCP connections bridged to
//! socket pairs by tokio tasks.
//!
//! Each TCP connection gets a socket pair; the process holds one end, and two tasks copy bytes
//! between the other end and the connection, each waiting whenever the other side is full, so
//! nothing is buffered beyond the socket's bounded buffer and the OS's own. A listener's accept
//! loop accepts only while its backlog has room: past that, connections wait in the OS's
//! backlog.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use nebulet_abi::SOCKET_MAX_TRANSFER_BYTES;
use nebulet_kernel::{BoxFuture, Connect, Connector, Listener, SocketEnd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

/// How long a connector waits for the host to connect before `ERR_IO`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on `address` (bound now, so a taken port fails here) and returns the kernel listener
/// its connections go to, to grant to a process. The accept loop ends once nobody holds the
/// listener any more.
pub fn listen(runtime: &Handle, address: SocketAddr) -> io::Result<(Arc<Listener>, SocketAddr)> {
    let socket = std::net::TcpListener::bind(address)?;
    let bound = socket.local_addr()?;
    Ok((listen_on(runtime, socket)?, bound))
}

/// The kernel listener fed by a socket that already listens (a domain's, passed in by its
/// parent), as [`listen`] gives.
pub fn listen_on(runtime: &Handle, socket: std::net::TcpListener) -> io::Result<Arc<Listener>> {
    socket.set_nonblocking(true)?;
    let listener = Listener::new();
    let weak = Arc::downgrade(&listener);
    let bridges = runtime.clone();
    runtime.spawn(async move {
        match TcpListener::from_std(socket) {
            Ok(socket) => accept_loop(socket, weak, bridges).await,
            Err(_) => close(&weak),
        }
    });
    Ok(listener)
}

fn close(listener: &Weak<Listener>) {
    if let Some(listener) = listener.upgrade() {
        listener.close();
    }
}

async fn accept_loop(socket: TcpListener, listener: Weak<Listener>, runtime: Handle) {
    loop {
        if listener.strong_count() == 0 {
            return;
        }
        let stream = match socket.accept().await {
            Ok((stream, _)) => stream,
            // A connection that failed before it was accepted (reset): the next one.
            Err(error) if is_transient(&error) => continue,
            Err(_) => return close(&listener),
        };
        let mut connection = Some(bridge(&runtime, stream));
        let offered = poll_fn(|context| match listener.upgrade() {
            Some(listener) => listener.poll_offer(context, &mut connection),
            None => std::task::Poll::Ready(false),
        })
        .await;
        if !offered {
            return;
        }
    }
}

/// Accept errors that concern one connection, or a passing shortage, not the listening socket.
fn is_transient(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || matches!(error.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE))
}

/// The errno values of descriptor shortages (Linux), without a libc dependency for two numbers.
mod libc_errno {
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
}

/// Connections (of any kernel in this host process) whose outbound copy has not finished.
static OUTBOUND: Mutex<usize> = Mutex::new(0);
/// Notified when [`OUTBOUND`] goes down.
static OUTBOUND_DONE: Condvar = Condvar::new();

/// One connection's outbound copy, counted in [`OUTBOUND`] while it runs.
struct Outbound;

impl Outbound {
    fn start() -> Self {
        *OUTBOUND.lock().unwrap_or_else(|poison| poison.into_inner()) += 1;
        Outbound
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        *OUTBOUND.lock().unwrap_or_else(|poison| poison.into_inner()) -= 1;
        OUTBOUND_DONE.notify_all();
    }
}

/// How long a command (`nebulet run`, a domain's host process) waits, once its process has
/// ended, for its connections to send what the program wrote: [`drain`]'s usual patience.
pub const DRAIN_PATIENCE: Duration = Duration::from_secs(5);

/// Waits (at most `patience`) until every connection has sent what processes wrote to it:
/// a command that exits once its process has ended calls this first, so that the last bytes
/// a program wrote (and its FIN) reach the client. `false` if some did not finish in time (a
/// client that does not read).
pub fn drain(patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    let mut running = OUTBOUND.lock().unwrap_or_else(|poison| poison.into_inner());
    while *running > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        running = OUTBOUND_DONE
            .wait_timeout(running, left)
            .unwrap_or_else(|poison| poison.into_inner())
            .0;
    }
    true
}

/// A socket pair for `stream`: returns the process's end; the host's end is copied to and from
/// the connection by two tasks.
pub fn bridge(runtime: &Handle, stream: TcpStream) -> Arc<SocketEnd> {
    let _ = stream.set_nodelay(true);
    let (process_end, host_end) = SocketEnd::pair();
    let (mut reader, mut writer) = stream.into_split();
    let inbound = host_end.clone();
    runtime.spawn(async move {
        let mut buffer = vec![0u8; SOCKET_MAX_TRANSFER_BYTES as usize];
        loop {
            let count = match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            };
            let mut bytes = &buffer[..count];
            while !bytes.is_empty() {
                match poll_fn(|context| inbound.poll_write(context, bytes)).await {
                    Some(written) => bytes = &bytes[written..],
                    // The process will never read: stop reading the connection.
                    None => return,
                }
            }
        }
        inbound.shutdown_write();
    });
    let outbound = Outbound::start();
    runtime.spawn(async move {
        let _outbound = outbound;
        let mut buffer = vec![0u8; SOCKET_MAX_TRANSFER_BYTES as usize];
        loop {
            let count = poll_fn(|context| host_end.poll_read(context, &mut buffer)).await;
            if count == 0 || writer.write_all(&buffer[..count]).await.is_err() {
                break;
            }
        }
        // The process wrote its last byte (or closed its end): FIN.
        let _ = writer.shutdown().await;
    });
    process_end
}

/// A connector to one host address, to grant to a process.
pub fn connector(runtime: &Handle, address: SocketAddr) -> Arc<Connector> {
    Connector::host(Arc::new(TcpConnect { runtime: runtime.clone(), address }))
}

/// Connects to one TCP address.
#[derive(Debug)]
struct TcpConnect {
    runtime: Handle,
    address: SocketAddr,
}

impl Connect for TcpConnect {
    fn connect(&self) -> BoxFuture<Result<Arc<SocketEnd>, nebulet_abi::Error>> {
        let (runtime, address) = (self.runtime.clone(), self.address);
        Box::pin(async move {
            let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address));
            match connecting.await {
                Ok(Ok(stream)) => Ok(bridge(&runtime, stream)),
                _ => Err(nebulet_abi::Error::Io),
            }
        })
    }
}
