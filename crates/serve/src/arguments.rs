//! The command line of `nebulet serve` and the command itself.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nebulet_hosted::{Console, Emulator, EngineOptions, module_binary};

use crate::{App, Convention, Limits, Log, Server};

/// The largest module file `nebulet serve` reads (as `nebulet run`).
const MAX_MODULE_BYTES: u64 = 256 << 20;

/// Serves HTTP/1.1, answering each request with a fresh process of a WebAssembly app.
///
/// The app is compiled once; every request runs in a new process of it, isolated from all
/// others, within the limits below. Sizes are bytes with an optional K, M or G (powers of 1024);
/// durations a number with ns, us, ms or s (as in the image manifest). One access-log line per
/// request goes to stderr, and so does what handlers write to their stderr, prefixed. SIGINT or
/// SIGTERM stop the server: requests already read are finished (at most 5 s), then it exits 0.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Sizes are bytes with an optional K, M or G (powers of 1024); \
    durations a number with ns, us, ms or s. Each request gets one access-log line on stderr \
    (address, method and path, status, body bytes, duration); what handlers write to stderr \
    follows, prefixed with APP#N. SIGINT or SIGTERM stop the server: no new connections, idle \
    ones closed, requests already read finished within 5 s (then killed and answered 503); it \
    exits 0. docs/abi.md, \"HTTP handlers\", describes both conventions.")]
pub struct ServeArgs {
    /// The handler: a `.wasm` or `.wat` module (at most 256 MiB).
    pub app: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// How handlers get requests: `wagi` (CGI over WASI stdio, any WASI program) or `native`
    /// (sip programs: the head in the bootstrap message, sockets for the bodies). Default: native
    /// if the module imports `nebulet` `process_bootstrap`, else wagi.
    #[arg(long, value_enum)]
    pub convention: Option<Convention>,
    /// Memory of each handler process (past it: 500).
    #[arg(long, value_name = "SIZE", default_value = "128M", value_parser = parse_size)]
    pub max_memory_size: u64,
    /// CPU time of each handler process (past it: 504).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub cpu_time: Duration,
    /// Wall time of each handler process (past it: killed, 504).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The largest request body (past it: 413).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub max_body_size: u64,
    /// The largest request head, request line and headers (past it: 431).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub max_header_size: u64,
    /// The whole request head must arrive within this time (else 408); idle keep-alive
    /// connections are closed after it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Handler processes running at once (default: 4 per core).
    #[arg(long, value_name = "COUNT")]
    pub max_concurrency: Option<usize>,
    /// Requests waiting for a free handler (past it: 503).
    #[arg(long, value_name = "COUNT", default_value_t = 1024)]
    pub max_queue: usize,
    /// How long a request waits for a free handler (past it: 503).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// Answers `GET /metrics` with Prometheus metrics (requests by status, latency histogram,
    /// handlers running and queued, live processes, memory) instead of running the app.
    #[arg(long)]
    pub metrics: bool,
    /// Opens a control socket at PATH (mode 0600) on which `nebulet ps` lists the processes.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

impl ServeArgs {
    /// The limits these arguments set.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            memory_bytes: self.max_memory_size,
            cpu_time: self.cpu_time,
            wall_time: self.timeout,
            body_bytes: self.max_body_size,
            header_bytes: usize::try_from(self.max_header_size).unwrap_or(usize::MAX),
            header_timeout: self.header_timeout,
            concurrency: self.max_concurrency.unwrap_or(defaults.concurrency),
            queue: self.max_queue,
            queue_timeout: self.queue_timeout,
            ..defaults
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    nebulet_abi::bootstrap::parse_size(text)
        .ok_or_else(|| format!("`{text}` is not a size (bytes with an optional K, M or G)"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    nebulet_abi::bootstrap::parse_duration(text)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("`{text}` is not a duration (a number with ns, us, ms or s)"))
}

/// Runs `nebulet serve` until SIGINT or SIGTERM; the command's exit code, or a one-line error.
pub fn run(arguments: ServeArgs) -> Result<u8, String> {
    run_with(arguments, |_| Ok(()))
}

/// [`run`], calling `prepare` with the kernel before the server starts (the command opens its
/// control socket there).
pub fn run_with(
    arguments: ServeArgs,
    prepare: impl FnOnce(&std::sync::Arc<nebulet_hosted::Kernel>) -> Result<(), String>,
) -> Result<u8, String> {
    let bytes = read_module(&arguments.app)?;
    let limits = arguments.limits();
    let emulator =
        Emulator::with_pooling(Console::Stdout, EngineOptions::default(), crate::pooling(&limits))
            .map_err(|error| format!("cannot start the kernel: {error:#}"))?;
    prepare(emulator.kernel())?;
    let module = emulator
        .compile(&bytes)
        .map_err(|reason| format!("cannot load {}: {reason}", arguments.app.display()))?;
    let name = arguments
        .app
        .file_stem()
        .map_or_else(|| "app".into(), |stem| stem.to_string_lossy().into_owned());
    let app = App::new(module, &name, arguments.convention);
    let mut server =
        Server::bind(emulator.kernel().clone(), app, limits, Log::Stderr, arguments.addr)
            .map_err(|error| format!("cannot listen on {}: {error}", arguments.addr))?;
    if arguments.metrics {
        server.serve_metrics();
    }
    eprintln!(
        "nebulet serve: {name} ({}) on http://{}",
        server.convention_name(),
        server.local_addr()
    );
    emulator
        .block_on(server.run(termination()))
        .map_err(|error| format!("the server failed: {error}"))?;
    Log::Stderr.flush();
    emulator.flush_console();
    Ok(0)
}

/// Resolves at the first SIGINT or SIGTERM.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        // No signal handling (not expected on Linux): serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

/// The module file's bytes, at most [`MAX_MODULE_BYTES`], as a wasm binary (wat is parsed).
fn read_module(file: &Path) -> Result<Vec<u8>, String> {
    let cannot_read = |error: std::io::Error| format!("cannot read {}: {error}", file.display());
    let opened = std::fs::File::open(file).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    opened.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(format!("{} is larger than {} MiB", file.display(), MAX_MODULE_BYTES >> 20));
    }
    Ok(module_binary(&bytes, Some(file))?.into_owned())
}
