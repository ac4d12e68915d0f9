//! One client connection: hyper serves its requests; this adds the 408 for a head that came too
//! slowly, the log lines of requests hyper refused, and a lingering close.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Limits;
use crate::environment::Peers;
use crate::log::Access;
use crate::server::Shared;

/// After the server is done with a connection, how long it reads (and drops) what the client
/// still sends, so that the close does not reset the connection before the client has read the
/// answer (a close with unread bytes sends RST, and the client's TCP may drop the answer).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The answer to a request head that did not arrive in time.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// hyper's settings for every connection.
pub(crate) fn builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper starts this timer when it starts waiting for a head (also on an idle keep-alive
        // connection) and does not restart it per read: the whole head must come in time.
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.header_bytes)
        // A head still unfinished when the buffer is full is refused too (hyper's minimum
        // buffer is 8 KiB).
        .max_buf_size(limits.header_bytes.max(8192))
        .keep_alive(true);
    builder
}

/// What a connection's stream and its task share.
#[derive(Debug)]
struct Connection {
    opened: Instant,
    /// When the first byte after the last answer arrived (nanoseconds after `opened`, plus 1),
    /// 0 if none has: a head is then on its way.
    head_since: AtomicU64,
    /// The stream, handed back when hyper drops it.
    stream: Mutex<Option<TcpStream>>,
}

impl Connection {
    fn bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            let since = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.head_since.store(since + 1, Ordering::Relaxed);
        }
    }

    /// When the head now on its way started, if one is.
    fn head_started(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.opened + Duration::from_nanos(since - 1)),
        }
    }
}

/// Serves a new connection in a task of its own, watched by `graceful` for the shutdown.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    remote: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let connection = Arc::new(Connection {
        opened: Instant::now(),
        head_since: AtomicU64::new(0),
        stream: Mutex::new(None),
    });
    let io = TokioIo::new(Stream { stream: Some(stream), connection: connection.clone() });
    let peers = Peers { remote, local: shared.local };
    let service = {
        let (shared, connection) = (shared.clone(), connection.clone());
        service_fn(move |request| {
            let (shared, connection) = (shared.clone(), connection.clone());
            async move {
                let mut response = crate::handler::answer(shared, request, peers).await;
                // Once the answer is sent, bytes that arrive start the next head.
                response.body_mut().set_on_drop(Box::new(move || {
                    connection.head_since.store(0, Ordering::Relaxed);
                }));
                Ok::<_, Infallible>(response)
            }
        })
    };
    let served = graceful.watch(builder.serve_connection(io, service));
    let shared = shared.clone();
    tokio::spawn(async move {
        shared.statistics.send_modify(|statistics| statistics.connections += 1);
        let result = served.await;
        let stream = connection.stream.lock().unwrap_or_else(|poison| poison.into_inner()).take();
        if let Some(stream) = stream {
            if let Err(error) = result {
                refused(&shared, &stream, &connection, &error, remote).await;
            }
            linger(&stream).await;
        }
        shared.statistics.send_modify(|statistics| statistics.connections -= 1);
    });
}

/// Logs a request hyper refused (it answered 400 or 431 itself), or answers 408 for a head that
/// did not arrive in time. An idle connection that timed out is closed without a word.
async fn refused(
    shared: &Shared,
    stream: &TcpStream,
    connection: &Connection,
    error: &hyper::Error,
    remote: SocketAddr,
) {
    let Some(started) = connection.head_started() else { return };
    let status = if error.is_timeout() {
        write_all(stream, REQUEST_TIMEOUT).await;
        408
    } else if error.is_parse_too_large() {
        431
    } else if error.is_parse() {
        400
    } else {
        // The connection failed or closed mid-head: nobody to answer.
        return;
    };
    let log = shared.log.clone();
    let metrics = shared.metrics.clone();
    Access { log, remote, request: "-".into(), status, started, metrics }.write(0);
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(bytes) {
            Ok(count) => bytes = &bytes[count..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Stops writing, then reads and drops what the client still sends, for a while, before the
/// stream closes (see [`LINGER`]).
async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let mut buffer = [0u8; 4096];
    let mut dropped = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while dropped < LINGER_BYTES {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buffer) {
                Ok(0) => return,
                Ok(count) => dropped += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// The TCP stream as hyper sees it: notes when bytes arrive, and hands the stream back to the
/// connection's task when hyper drops it.
struct Stream {
    /// `None` only while dropping.
    stream: Option<TcpStream>,
    connection: Arc<Connection>,
}

impl Stream {
    fn inner(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("the stream is there until dropped"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        *self.connection.stream.lock().unwrap_or_else(|poison| poison.into_inner()) =
            self.stream.take();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        let poll = this.inner().poll_read(context, buffer);
        if buffer.filled().len() > before {
            this.connection.bytes_arrived();
        }
        poll
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner().poll_write(context, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner().poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_flush(context)
    }

    /// Nothing yet: the connection's task shuts the stream down once hyper is done with it,
    /// after it has logged what hyper refused (see [`linger`]).
    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
