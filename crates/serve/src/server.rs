//! The server: the app, its limits, the listening socket, the accept loop and the shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use nebulet_hosted::{Kernel, wasmtime};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::metrics::Metrics;
use crate::{Convention, Limits, Log};

/// Connections waiting to be accepted (the OS's backlog).
const BACKLOG: i32 = 1024;

/// How long before the end of the shutdown grace handlers still running are killed, so that
/// their 503 answers are written before the server ends.
const KILL_MARGIN: Duration = Duration::from_millis(500);

/// The app every request runs: its compiled module and its convention.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) module: wasmtime::Module,
    pub(crate) name: String,
    pub(crate) convention: Convention,
}

impl App {
    /// The app `name` of `module`, with `convention`, or (`None`) the convention its imports
    /// show: native if it imports `nebulet` `process_bootstrap` (it reads its bootstrap
    /// channel), else WAGI.
    pub fn new(module: wasmtime::Module, name: &str, convention: Option<Convention>) -> Self {
        let convention = convention.unwrap_or_else(|| {
            let native = module.imports().any(|import| {
                import.module() == nebulet_abi::IMPORT_MODULE
                    && import.name() == "process_bootstrap"
            });
            if native { Convention::Native } else { Convention::Wagi }
        });
        Self { module, name: name.to_string(), convention }
    }

    /// How its handlers get requests.
    pub fn convention(&self) -> Convention {
        self.convention
    }
}

/// What the server is doing now, for tests and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Handler processes started and not yet ended and reported.
    pub running: usize,
    /// Requests waiting for a handler slot.
    pub queued: usize,
    /// Open client connections.
    pub connections: usize,
}

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    /// Accepting no more; finishing the requests read.
    Draining,
    /// The grace has passed: handlers still running are killed.
    Killing,
}

/// What every connection and request of a server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) app: App,
    pub(crate) limits: Limits,
    pub(crate) log: Log,
    pub(crate) admission: Admission,
    pub(crate) statistics: watch::Sender<Statistics>,
    pub(crate) local: SocketAddr,
    /// Counted and served at `GET /metrics` when [`Server::serve_metrics`] asked for them.
    pub(crate) metrics: Option<Arc<Metrics>>,
    phase: watch::Sender<Phase>,
    requests: AtomicU64,
}

impl Shared {
    /// Resolves once handlers must be killed (the shutdown grace has passed).
    pub(crate) async fn killing(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|phase| *phase == Phase::Killing).await;
    }

    /// A number for the next request, for the log.
    pub(crate) fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// An HTTP/1.1 server whose every request runs in a fresh process of one app.
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Listens on `address` (port 0: any free port) for requests to `app`, run on `kernel`.
    pub fn bind(
        kernel: Arc<Kernel>,
        app: App,
        limits: Limits,
        log: Log,
        address: SocketAddr,
    ) -> io::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();
        let local = listener.local_addr()?;
        let admission = Admission::new(limits.concurrency, limits.queue, limits.queue_timeout);
        let shared = Arc::new(Shared {
            kernel,
            app,
            limits,
            log,
            admission,
            statistics: watch::Sender::new(Statistics::default()),
            local,
            metrics: None,
            phase: watch::Sender::new(Phase::Serving),
            requests: AtomicU64::new(0),
        });
        Ok(Self { listener, shared })
    }

    /// Answers `GET /metrics` itself, with Prometheus metrics (requests, latency, handlers,
    /// live processes, memory), instead of running the app for that path. Before [`run`].
    ///
    /// [`run`]: Server::run
    pub fn serve_metrics(&mut self) {
        let shared = Arc::get_mut(&mut self.shared).expect("the server has not started");
        shared.metrics = Some(Arc::new(Metrics::new()));
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Its statistics, updated as they change.
    pub fn statistics(&self) -> watch::Receiver<Statistics> {
        self.shared.statistics.subscribe()
    }

    /// `wagi` or `native`.
    pub fn convention_name(&self) -> &'static str {
        match self.shared.app.convention {
            Convention::Wagi => "wagi",
            Convention::Native => "native",
        }
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes idle connections and
    /// finishes the requests already read; handlers still running near the end of the grace
    /// ([`Limits::shutdown_grace`]) are killed and answered 503. Returns when every connection
    /// and handler is done, or when the grace has passed. Must run on the kernel's runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let listener = TcpListener::from_std(self.listener)?;
        let shared = self.shared;
        let graceful = GracefulShutdown::new();
        let builder = crate::connection::builder(&shared.limits);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        crate::connection::spawn(&shared, &builder, &graceful, stream, remote);
                    }
                    Err(error) if is_transient(&error) => {
                        // Out of descriptors, or one connection failed: the next one, after a
                        // pause that lets connections close.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(error) => return Err(error),
                },
            }
        }
        drop(listener);
        shared.phase.send_replace(Phase::Draining);
        let grace = shared.limits.shutdown_grace;
        let killer = {
            let shared = shared.clone();
            let patience = grace.saturating_sub(KILL_MARGIN.min(grace / 2));
            tokio::spawn(async move {
                tokio::time::sleep(patience).await;
                shared.phase.send_replace(Phase::Killing);
            })
        };
        let mut statistics = shared.statistics.subscribe();
        let _ = tokio::time::timeout(grace, async {
            graceful.shutdown().await;
            let _ = statistics.wait_for(|statistics| statistics.running == 0).await;
        })
        .await;
        killer.abort();
        Ok(())
    }
}

/// Accept errors that concern one connection, or a passing shortage, not the listening socket.
fn is_transient(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}
