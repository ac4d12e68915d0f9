//! Where the server's lines go: the access log and what handlers write to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the server writes its lines.
#[derive(Debug, Clone)]
pub enum Log {
    /// The server's stderr, one line at a time.
    Stderr,
    /// Kept in memory (for tests).
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Log {
    /// Writes one line (without its newline).
    pub(crate) fn line(&self, text: &str) {
        match self {
            Log::Stderr => {
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "{text}");
            }
            Log::Memory(lines) => {
                lines.lock().unwrap_or_else(|poison| poison.into_inner()).push(text.to_string());
            }
        }
    }
}

/// One request's access-log line, written when its answer is done: who asked, what, the status,
/// the body bytes sent and how long it took from the head.
#[derive(Debug)]
pub(crate) struct Access {
    pub(crate) log: Log,
    pub(crate) remote: SocketAddr,
    /// `METHOD PATH`, or `-` for a request refused before its head was read.
    pub(crate) request: String,
    pub(crate) status: u16,
    pub(crate) started: Instant,
}

impl Access {
    pub(crate) fn write(&self, bytes: u64) {
        let milliseconds = self.started.elapsed().as_secs_f64() * 1000.0;
        self.log.line(&format!(
            "{} \"{}\" {} {bytes} {milliseconds:.3}ms",
            self.remote.ip(),
            self.request,
            self.status
        ));
    }
}
