//! One request: its limits checked, a handler slot, a fresh process of the app, and the answer
//! its supervisor reports.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use hyper::Request;
use hyper::body::Incoming;
use nebulet_abi::Limit;
use nebulet_hosted::{Grant, ProcessOptions, ProcessRef, SocketEnd, Stdio};
use tokio::sync::mpsc;

use crate::Convention;
use crate::body::{Fed, Piece, RequestBody, ResponseBody, read_whole};
use crate::environment::{Peers, cgi_variables, head_text};
use crate::log::Access;
use crate::server::Shared;
use crate::supervisor::{Handler, supervise};

/// Answers one request (hyper's service). The body writes the access-log line when done; a
/// request whose client went away before its answer gets a line with status 499 (as nginx
/// logs it).
pub(crate) async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    peers: Peers,
) -> Response<ResponseBody> {
    let request_line = format!("{} {}", request.method(), request.uri().path());
    let log = shared.log.clone();
    let access = Access {
        log,
        remote: peers.remote,
        request: request_line,
        status: 499,
        started: Instant::now(),
        metrics: shared.metrics.clone(),
    };
    let mut unanswered = Unanswered(Some(access));
    let mut response = respond(&shared, request, peers).await;
    if let Some(mut access) = unanswered.0.take() {
        access.status = response.status().as_u16();
        response.body_mut().set_access(access);
    }
    response
}

/// A request's access line until it is answered: written (499) if the answer never comes.
struct Unanswered(Option<Access>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(access) = self.0.take() {
            access.write(0);
        }
    }
}

async fn respond(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    peers: Peers,
) -> Response<ResponseBody> {
    if let Some(metrics) = &shared.metrics
        && request.uri().path() == "/metrics"
    {
        return metrics_page(shared, metrics, request.method());
    }
    let limits = &shared.limits;
    // A NUL would cut PATH_INFO short in the handler's environment (C strings).
    if percent_encoding::percent_decode_str(request.uri().path()).any(|byte| byte == 0) {
        return failure(StatusCode::BAD_REQUEST);
    }
    let declared = declared_length(&request);
    if declared.is_some_and(|length| length > limits.body_bytes) {
        return failure(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let Some(slot) = shared.admission.enter(&shared.statistics, shared.killing()).await else {
        return failure(StatusCode::SERVICE_UNAVAILABLE);
    };
    let (parts, incoming) = request.into_parts();
    let chunked = declared.is_none() && !incoming.is_end_stream();
    let (body, length) = if shared.app.convention == Convention::Wagi && chunked {
        // CGI gives a body's length in CONTENT_LENGTH: a chunked body is read whole first.
        let reading =
            tokio::time::timeout(limits.wall_time, read_whole(incoming, limits.body_bytes));
        let whole = tokio::select! {
            whole = reading => whole,
            () = shared.killing() => return failure(StatusCode::SERVICE_UNAVAILABLE),
        };
        match whole {
            Ok(Ok(bytes)) => {
                let length = bytes.len() as u64;
                (RequestBody::Whole(bytes), Some(length))
            }
            Ok(Err(Fed::TooLarge)) => return failure(StatusCode::PAYLOAD_TOO_LARGE),
            Ok(Err(_)) => return failure(StatusCode::BAD_REQUEST),
            Err(_) => return failure(StatusCode::REQUEST_TIMEOUT),
        }
    } else {
        (RequestBody::Streaming(incoming), declared)
    };
    let handler = match start(shared, &parts, length, peers) {
        Ok(handler) => handler,
        Err(status) => return failure(status),
    };
    let (sender, mut receiver) = mpsc::channel(2);
    shared.statistics.send_modify(|statistics| statistics.running += 1);
    tokio::spawn(supervise(shared.clone(), handler, body, slot, sender));
    match receiver.recv().await {
        Some(Piece::Head { head, body, complete }) => {
            let rest = (!complete).then_some(receiver);
            let mut response = Response::new(ResponseBody::new(body, rest));
            *response.status_mut() = head.status;
            *response.headers_mut() = head.headers;
            response
        }
        Some(Piece::Failure(status)) => failure(status),
        Some(Piece::Data(_) | Piece::Abort) | None => failure(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The Content-Length a request declares (hyper has checked that it is one valid number).
fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// An answer of the server's own: the status and its reason as plain text. Those sent before
/// the request body is read close the connection (the rest of the body is not read).
/// `GET /metrics` (or HEAD): the Prometheus text format; other methods 405.
fn metrics_page(
    shared: &Shared,
    metrics: &crate::metrics::Metrics,
    method: &http::Method,
) -> Response<ResponseBody> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return failure(StatusCode::METHOD_NOT_ALLOWED);
    }
    let statistics = *shared.statistics.borrow();
    let text = metrics.render(&shared.kernel, &statistics);
    let mut response = Response::new(ResponseBody::new(Bytes::from(text), None));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(crate) fn failure(status: StatusCode) -> Response<ResponseBody> {
    let text = format!("{} {}\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    let mut response = Response::new(ResponseBody::new(Bytes::from(text), None));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Starts the handler process for a request, with its sockets and limits.
fn start(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    length: Option<u64>,
    peers: Peers,
) -> Result<Handler, StatusCode> {
    let app = &shared.app;
    let limits = [
        (Limit::MemoryBytes, shared.limits.memory_bytes),
        (
            Limit::CpuNanoseconds,
            u64::try_from(shared.limits.cpu_time.as_nanos()).unwrap_or(u64::MAX),
        ),
    ];
    let environment = cgi_variables(parts, peers, length);
    // What the handler writes to stderr (and, native, to stdout) goes to the log.
    let (process_errors, errors) = SocketEnd::pair();
    let (process_input, input) = SocketEnd::pair();
    let (process_output, output) = SocketEnd::pair();
    let mut options = ProcessOptions { name: app.name.clone(), environment, ..Default::default() };
    let message = match app.convention {
        Convention::Wagi => {
            // As WAGI: the query's `&`-separated items are the arguments.
            options.args = query_arguments(parts.uri.query());
            options.stdio =
                Some(Stdio { input: process_input, output: process_output, error: process_errors });
            None
        }
        Convention::Native => {
            let head = head_text(parts);
            if head.len() > nebulet_abi::CHANNEL_MAX_MESSAGE_BYTES as usize {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            let (empty_input, nothing) = SocketEnd::pair();
            nothing.shutdown_write();
            options.stdio = Some(Stdio {
                input: empty_input,
                output: process_errors.clone(),
                error: process_errors,
            });
            Some((head, vec![Grant::Socket(process_input), Grant::Socket(process_output)]))
        }
    };
    let process: ProcessRef = shared
        .kernel
        .spawn_with_limits(app.module.clone(), options, &limits, message)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let label = format!("{}#{}", app.name, shared.next_request());
    Ok(Handler { process, input, output, errors, label })
}

fn query_arguments(query: Option<&str>) -> Vec<String> {
    query
        .filter(|query| !query.is_empty())
        .map(|query| query.split('&').map(str::to_string).collect())
        .unwrap_or_default()
}
