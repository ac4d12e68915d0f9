//! Where the server's lines go: the access log and what handlers write to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::metrics::Metrics;

/// Where the server writes its lines.
#[derive(Debug, Clone)]
pub enum Log {
    /// The server's stderr, written by a thread of its own (see [`Log::flush`]).
    Stderr,
    /// Kept in memory (for tests).
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Lines waiting for the stderr writer; past this many, a line waits for room.
const QUEUED_LINES: usize = 1 << 16;

/// How long the stderr writer lets lines gather after a batch (see [`stderr_writer`]).
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// What the stderr writer is sent.
enum Entry {
    Line(String),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// The stderr writer's queue. The server's workers never write to stderr themselves: a write
/// blocks while the reader of a pipe is slow, and a blocked worker would hold up every request
/// on it. The thread writes lines in batches and flushes whenever its queue is empty.
///
/// After a batch, the thread sleeps for [`BATCH_PAUSE`] rather than waiting on the queue: a
/// sender wakes a waiting receiver (a system call on the worker, and a context switch per line:
/// 7.5 % of a loaded server's profile), while lines sent to a sleeping one just queue. Once a
/// pause finds the queue empty, the thread waits on it again, so an idle server wakes nothing.
fn stderr_writer() -> &'static SyncSender<Entry> {
    static WRITER: OnceLock<SyncSender<Entry>> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (sender, receiver) = sync_channel(QUEUED_LINES);
        let spawned = std::thread::Builder::new()
            .name("nebulet-log".into())
            .spawn(move || write_lines(receiver));
        if spawned.is_err() {
            eprintln!("nebulet serve: no thread for the log; its lines are lost");
        }
        sender
    })
}

fn write_lines(receiver: Receiver<Entry>) {
    let mut stderr = std::io::BufWriter::with_capacity(64 << 10, std::io::stderr());
    while let Ok(entry) = receiver.recv() {
        let mut next = Some(entry);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Line(text) => {
                    let _ = stderr.write_all(text.as_bytes());
                    let _ = stderr.write_all(b"\n");
                }
                Entry::Flush(done) => {
                    let _ = stderr.flush();
                    let _ = done.send(());
                }
            }
            next = receiver.try_recv().ok();
            if next.is_none() {
                let _ = stderr.flush();
                std::thread::sleep(BATCH_PAUSE);
                next = receiver.try_recv().ok();
            }
        }
    }
}

impl Log {
    /// Writes one line (without its newline).
    pub(crate) fn line(&self, text: &str) {
        match self {
            Log::Stderr => {
                let _ = stderr_writer().send(Entry::Line(text.to_string()));
            }
            Log::Memory(lines) => {
                lines.lock().unwrap_or_else(|poison| poison.into_inner()).push(text.to_string());
            }
        }
    }

    /// Waits until every line logged so far is written out.
    pub fn flush(&self) {
        if let Log::Stderr = self {
            let (done, written) = sync_channel(1);
            if stderr_writer().send(Entry::Flush(done)).is_ok() {
                let _ = written.recv();
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
    /// The server's metrics, which count the request too.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl Access {
    pub(crate) fn write(&self, bytes: u64) {
        let elapsed = self.started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.answered(self.status, elapsed);
        }
        let milliseconds = elapsed.as_secs_f64() * 1000.0;
        self.log.line(&format!(
            "{} \"{}\" {} {bytes} {milliseconds:.3}ms",
            self.remote.ip(),
            self.request,
            self.status
        ));
    }
}
