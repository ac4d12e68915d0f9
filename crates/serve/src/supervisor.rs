//! A handler process's supervisor: feeds it the request body, reads its response and its
//! stderr, enforces the wall-time deadline and the shutdown, and reports the answer.
//!
//! The response head is held back until the process has ended or its body passes
//! [`HOLD_BYTES`], so that a handler that fails before then gets a clean 500 or 504; past that,
//! the rest streams, and a failure cuts the body off.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use nebulet_abi::ExitReason;
use nebulet_hosted::{ExitStatus, ProcessRef, SocketEnd};
use tokio::sync::mpsc;

use crate::admission::Slot;
use crate::body::{Fed, Piece, RequestBody, feed};
use crate::log::Log;
use crate::response::{self, Head, Parsed};
use crate::server::Shared;
use crate::sockets::{read, read_now};

/// How much of a response body is held back before the head is sent.
const HOLD_BYTES: usize = 64 << 10;

/// How much of one handler's stderr reaches the log, and the longest line.
const STDERR_BYTES: usize = 64 << 10;
const STDERR_LINE_BYTES: usize = 4 << 10;

/// A started handler process and the host's ends of its sockets.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) process: ProcessRef,
    /// The request body goes in here (its stdin, or its body socket).
    pub(crate) input: Arc<SocketEnd>,
    /// The CGI response comes out here (its stdout, or its response socket).
    pub(crate) output: Arc<SocketEnd>,
    /// Its stderr.
    pub(crate) errors: Arc<SocketEnd>,
    /// Its name in the log: `app#request`.
    pub(crate) label: String,
}

/// Why the server ended a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Its wall time passed.
    Late,
    /// The request body passed its limit.
    TooLarge,
    /// The server is shutting down and its grace passed.
    Shutdown,
    /// Nobody waits for the answer any more.
    ClientGone,
    /// Its output is not a CGI response.
    BadOutput,
}

/// Supervises `handler` until its process ends, then sends the answer through `sender`. The
/// caller counted it in the running handlers; it counts itself out when done.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    handler: Handler,
    body: RequestBody,
    slot: Slot,
    sender: mpsc::Sender<Piece>,
) {
    let Handler { process, input, output, errors, label } = handler;
    let deadline = tokio::time::Instant::now() + shared.limits.wall_time;
    let mut responder = Responder::new(sender, shared.limits.header_bytes);
    let mut stderr = ErrorLines::new(shared.log.clone(), &label);
    let mut cause = None;
    let mut reason = None;
    let (mut output_done, mut errors_done, mut fed) = (false, false, false);
    let (mut output_buffer, mut error_buffer) = (vec![0u8; 16 << 10], vec![0u8; 4 << 10]);
    let exit = process.wait();
    let feeding = feed(body, &input, shared.limits.body_bytes);
    tokio::pin!(exit, feeding);
    let status = loop {
        tokio::select! {
            status = &mut exit => break status,
            outcome = &mut feeding, if !fed => {
                fed = true;
                if outcome == Fed::TooLarge && cause.is_none() {
                    cause = Some(Cause::TooLarge);
                    process.kill();
                }
            }
            count = read(&output, &mut output_buffer), if !output_done && responder.wants_output() => {
                if count == 0 {
                    output_done = true;
                } else if let Err(invalid) = responder.feed(&output_buffer[..count])
                    && cause.is_none()
                {
                    cause = Some(Cause::BadOutput);
                    reason = Some(invalid);
                    process.kill();
                }
            }
            permit = responder.sender.clone().reserve_owned(), if responder.pending.is_some() => {
                if let (Ok(permit), Some(bytes)) = (permit, responder.pending.take()) {
                    permit.send(Piece::Data(bytes));
                }
            }
            count = read(&errors, &mut error_buffer), if !errors_done => {
                if count == 0 { errors_done = true } else { stderr.feed(&error_buffer[..count]) }
            }
            () = tokio::time::sleep_until(deadline), if cause.is_none() => {
                cause = Some(Cause::Late);
                process.kill();
            }
            () = shared.killing(), if cause.is_none() => {
                cause = Some(Cause::Shutdown);
                process.kill();
            }
            () = responder.sender.closed(), if cause.is_none() => {
                cause = Some(Cause::ClientGone);
                process.kill();
            }
        }
    };
    // The slot is free as soon as the process has ended.
    drop(slot);
    while let Some(count) = read_now(&errors, &mut error_buffer).filter(|count| *count > 0) {
        stderr.feed(&error_buffer[..count]);
    }
    stderr.finish();
    if let Err(invalid) = responder.drain(&output, &mut output_buffer).await
        && cause.is_none()
    {
        cause = Some(Cause::BadOutput);
        reason = Some(invalid);
    }
    let verdict = verdict(&process, &status, cause);
    if let Some(status) = verdict.filter(|status| *status != StatusCode::OK) {
        let why = reason.or_else(|| status_reason(&status, cause)).unwrap_or_default();
        shared.log.line(&format!("{label}: answered {} ({why})", status.as_u16()));
    }
    responder.finish(verdict, &shared.log, &label).await;
    shared.statistics.send_modify(|statistics| statistics.running -= 1);
}

/// How a request is answered once its handler ended: `Some(OK)` with the handler's response,
/// `Some(status)` with the server's failure answer, `None` not at all.
fn verdict(process: &ProcessRef, status: &ExitStatus, cause: Option<Cause>) -> Option<StatusCode> {
    Some(match (cause, status.reason) {
        (Some(Cause::ClientGone), _) => return None,
        (Some(Cause::TooLarge), _) => StatusCode::PAYLOAD_TOO_LARGE,
        (Some(Cause::Shutdown), _) => StatusCode::SERVICE_UNAVAILABLE,
        // Out of memory is the handler's failure, even if it was also late.
        (_, ExitReason::OutOfResources) if process.over_cpu_limit() => StatusCode::GATEWAY_TIMEOUT,
        (_, ExitReason::OutOfResources) => StatusCode::INTERNAL_SERVER_ERROR,
        (Some(Cause::Late), _) => StatusCode::GATEWAY_TIMEOUT,
        (Some(Cause::BadOutput), _) => StatusCode::INTERNAL_SERVER_ERROR,
        (None, ExitReason::Exited) => StatusCode::OK,
        (None, _) => StatusCode::INTERNAL_SERVER_ERROR,
    })
}

/// Why the server answered `status` itself, for the log.
fn status_reason(status: &StatusCode, cause: Option<Cause>) -> Option<String> {
    let text = match (cause, status.as_u16()) {
        (Some(Cause::Late), 504) => "wall time passed",
        (_, 504) => "CPU time passed",
        (Some(Cause::TooLarge), _) => "request body too large",
        (Some(Cause::Shutdown), _) => "killed at shutdown",
        _ => return None,
    };
    Some(text.into())
}

/// Where the handler's response stands.
enum Stage {
    /// Reading its header block.
    Head(Vec<u8>),
    /// The head is read; its body is held back.
    Holding(Head, BytesMut),
    /// The head and the held body were sent; the rest streams.
    Streaming,
}

/// Turns the handler's output into pieces of the answer.
struct Responder {
    sender: mpsc::Sender<Piece>,
    stage: Stage,
    /// Output read while streaming, not yet sent.
    pending: Option<Bytes>,
    header_limit: usize,
}

impl Responder {
    fn new(sender: mpsc::Sender<Piece>, header_limit: usize) -> Self {
        Self { sender, stage: Stage::Head(Vec::new()), pending: None, header_limit }
    }

    fn wants_output(&self) -> bool {
        self.pending.is_none()
    }

    /// Takes more output; an error if it is not a CGI response.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.stage {
            Stage::Head(buffer) => {
                buffer.extend_from_slice(bytes);
                if let Parsed::Complete(head, start) = response::parse(buffer, self.header_limit)? {
                    let body = BytesMut::from(&buffer[start..]);
                    self.stage = Stage::Holding(head, body);
                    self.commit_if_long();
                }
            }
            Stage::Holding(_, body) => {
                body.extend_from_slice(bytes);
                self.commit_if_long();
            }
            Stage::Streaming => self.pending = Some(Bytes::copy_from_slice(bytes)),
        }
        Ok(())
    }

    /// Sends the head and the held body once the body passes [`HOLD_BYTES`].
    fn commit_if_long(&mut self) {
        if let Stage::Holding(_, body) = &self.stage
            && body.len() > HOLD_BYTES
            && let Stage::Holding(head, body) = std::mem::replace(&mut self.stage, Stage::Streaming)
        {
            // The channel is empty until the head is sent; a closed one is seen by `closed`.
            let _ =
                self.sender.try_send(Piece::Head { head, body: body.freeze(), complete: false });
        }
    }

    /// Takes what the ended process left in its output, sending it on while streaming.
    async fn drain(&mut self, output: &SocketEnd, buffer: &mut [u8]) -> Result<(), String> {
        loop {
            if let Some(bytes) = self.pending.take()
                && self.sender.send(Piece::Data(bytes)).await.is_err()
            {
                return Ok(());
            }
            match read_now(output, buffer) {
                Some(count) if count > 0 => self.feed(&buffer[..count])?,
                _ => return Ok(()),
            }
        }
    }

    /// Sends the end of the answer: the handler's response (`Some(OK)`), or the server's
    /// failure status, which cuts off a body that was already streaming.
    async fn finish(self, verdict: Option<StatusCode>, log: &Log, label: &str) {
        let Some(status) = verdict else { return };
        let piece = match (self.stage, status) {
            (Stage::Streaming, StatusCode::OK) => return,
            (Stage::Streaming, _) => Piece::Abort,
            (Stage::Holding(head, body), StatusCode::OK) => {
                Piece::Head { head, body: body.freeze(), complete: true }
            }
            (Stage::Head(output), StatusCode::OK) => {
                // The output ended inside its header block.
                let shown = if output.is_empty() { "no output" } else { "no end of the headers" };
                log.line(&format!("{label}: answered 500 (not a CGI response: {shown})"));
                Piece::Failure(StatusCode::INTERNAL_SERVER_ERROR)
            }
            (_, status) => Piece::Failure(status),
        };
        let _ = self.sender.send(piece).await;
    }
}

/// A handler's stderr, as lines of the log, at most [`STDERR_BYTES`] of it.
struct ErrorLines {
    log: Log,
    label: String,
    line: Vec<u8>,
    left: usize,
}

impl ErrorLines {
    fn new(log: Log, label: &str) -> Self {
        Self { log, label: label.to_string(), line: Vec::new(), left: STDERR_BYTES }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.left == 0 {
            return;
        }
        let taken = &bytes[..bytes.len().min(self.left)];
        self.left -= taken.len();
        for &byte in taken {
            if byte == b'\n' {
                self.flush();
            } else {
                self.line.push(byte);
                if self.line.len() >= STDERR_LINE_BYTES {
                    self.flush();
                }
            }
        }
        if self.left == 0 {
            self.flush();
            self.log.line(&format!("{}: (the rest of its stderr is dropped)", self.label));
        }
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            self.log.line(&format!("{}: {}", self.label, text.trim_end_matches('\r')));
            self.line.clear();
        }
    }

    fn finish(&mut self) {
        self.flush();
    }
}
