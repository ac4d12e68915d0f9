//! Bodies: the request's, fed to the handler, and the response's, fed from it to hyper.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use nebulet_hosted::SocketEnd;
use tokio::sync::mpsc;

use crate::log::Access;
use crate::response::Head;

/// What a request's supervisor sends to the side that answers the client.
#[derive(Debug)]
pub(crate) enum Piece {
    /// The response head and the start of its body; `complete`: the body is all there.
    Head { head: Head, body: Bytes, complete: bool },
    /// No response from the handler: the server answers this status.
    Failure(http::StatusCode),
    /// More of the body.
    Data(Bytes),
    /// The handler failed after its head was sent: the body is cut off (the client sees an
    /// incomplete message).
    Abort,
}

/// The error a cut-off body ends with.
#[derive(Debug)]
pub(crate) struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the handler failed after its response started")
    }
}

impl std::error::Error for Aborted {}

/// A response body: bytes held already, then whatever the supervisor still sends. When hyper
/// is done with it (sent or dropped), it writes the access-log line and runs `on_drop`.
pub(crate) struct ResponseBody {
    held: Option<Bytes>,
    rest: Option<mpsc::Receiver<Piece>>,
    sent: u64,
    access: Option<Access>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ResponseBody").field("sent", &self.sent).finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// A body of `held`, then the `Data` pieces of `rest` until it closes.
    pub(crate) fn new(held: Bytes, rest: Option<mpsc::Receiver<Piece>>) -> Self {
        Self { held: Some(held), rest, sent: 0, access: None, on_drop: None }
    }

    pub(crate) fn set_access(&mut self, access: Access) {
        self.access = Some(access);
    }

    pub(crate) fn set_on_drop(&mut self, on_drop: Box<dyn FnOnce() + Send + Sync>) {
        self.on_drop = Some(on_drop);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        if let Some(held) = this.held.take().filter(|held| !held.is_empty()) {
            this.sent += held.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(held))));
        }
        let Some(rest) = this.rest.as_mut() else { return Poll::Ready(None) };
        match rest.poll_recv(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(bytes))) => {
                this.sent += bytes.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Piece::Abort)) => {
                this.rest = None;
                Poll::Ready(Some(Err(Aborted)))
            }
            Poll::Ready(Some(Piece::Head { .. } | Piece::Failure(_)) | None) => {
                this.rest = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.held.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.rest, &self.held) {
            (None, held) => SizeHint::with_exact(held.as_ref().map_or(0, |held| held.len() as u64)),
            (Some(_), _) => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(access) = self.access.take() {
            access.write(self.sent);
        }
        if let Some(on_drop) = self.on_drop.take() {
            on_drop();
        }
    }
}

/// A request body on its way to a handler.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// Read whole already.
    Whole(Bytes),
    /// Still arriving.
    Streaming(Incoming),
}

/// How feeding a request body to a handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fed {
    /// All of it, then the end of the stream.
    Complete,
    /// It passed the body limit.
    TooLarge,
    /// The handler closed its end: it reads no more.
    Unread,
    /// The client's connection failed.
    Broken,
}

/// Writes `body` to the handler's `input` end, then shuts it down for writing (the handler
/// reads to the end of the stream); stops at `limit` bytes.
pub(crate) async fn feed(body: RequestBody, input: &SocketEnd, limit: u64) -> Fed {
    let fed = match body {
        RequestBody::Whole(bytes) => {
            if crate::sockets::write_all(input, &bytes).await {
                Fed::Complete
            } else {
                Fed::Unread
            }
        }
        RequestBody::Streaming(mut incoming) => {
            let mut total = 0u64;
            loop {
                let data = match incoming.frame().await {
                    None => break Fed::Complete,
                    Some(Err(_)) => break Fed::Broken,
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        // Trailers: nothing for the handler.
                        Err(_) => continue,
                    },
                };
                total += data.len() as u64;
                if total > limit {
                    break Fed::TooLarge;
                }
                if !crate::sockets::write_all(input, &data).await {
                    break Fed::Unread;
                }
            }
        }
    };
    input.shutdown_write();
    fed
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_whole(mut incoming: Incoming, limit: u64) -> Result<Bytes, Fed> {
    let mut whole = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame.map_err(|_| Fed::Broken)?.into_data() else { continue };
        if (whole.len() + data.len()) as u64 > limit {
            return Err(Fed::TooLarge);
        }
        whole.extend_from_slice(&data);
    }
    Ok(whole.freeze())
}
