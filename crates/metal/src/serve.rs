//! `serve` on bare metal: HTTP/1.1 on the machine's network, each request answered by a fresh
//! process of one app, with the WAGI convention of the hosted `nebulet serve`
//! (`crates/serve`, `docs/abi.md` "HTTP handlers"): the CGI variables in its environment, the
//! query's `&`-separated items as its arguments, the body on its stdin, a CGI response on its
//! stdout, and what it writes to stderr on the console.
//!
//! The hosted server is hyper and tokio, which need `std`; this one is smaller: one request per
//! connection (`connection: close`), a Content-Length body (no chunked requests: 501), and the
//! handler's whole output answered at once when it has ended (a handler that traps after
//! writing its head gets a 500, where hosted has streamed the head already).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::Poll;

use nebulet_abi::{ExitReason, Limit};
use nebulet_kernel::{ExitStatus, Kernel, ProcessOptions, ProcessRef, SocketEnd, Stdio};

use crate::clock::now_ns;
use crate::executor::{self, Sleep};
use crate::network::{Connection, Network};

const SECOND: u64 = 1_000_000_000;
/// As `nebulet serve`'s defaults (`crates/serve/src/lib.rs`).
const MEMORY_BYTES: u64 = 128 << 20;
const CPU_NS: u64 = SECOND;
const WALL_NS: u64 = 30 * SECOND;
const HEADER_NS: u64 = 10 * SECOND;
/// The most a request head and body, and a handler's output, may take.
const HEAD_BYTES: usize = 16 << 10;
const BODY_BYTES: usize = 1 << 20;
const OUTPUT_BYTES: usize = 16 << 20;

/// Serves `module` on `port` forever.
pub async fn serve(
    kernel: Arc<Kernel>,
    network: Arc<Network>,
    name: String,
    module: wasmtime::Module,
    port: u16,
) {
    let app = Arc::new(App { kernel, name, module, port });
    network
        .listen(port, move |connection| {
            let app = app.clone();
            async move { app.answer(connection).await }
        })
        .await;
}

struct App {
    kernel: Arc<Kernel>,
    name: String,
    module: wasmtime::Module,
    port: u16,
}

/// The server's ends of a handler's standard streams.
struct Ends {
    input: Arc<SocketEnd>,
    output: Arc<SocketEnd>,
    errors: Arc<SocketEnd>,
}

/// What a handler wrote, and whether it was cut short.
struct Exchange {
    output: Vec<u8>,
    timed_out: bool,
    too_large: bool,
}

/// Waits for `process` to end, killing it at `late`; whether it was late, and how it ended.
async fn end_within(process: &ProcessRef, late: &mut Sleep) -> (bool, ExitStatus) {
    let ended = {
        let mut wait = pin!(process.wait());
        poll_fn(|context| {
            if let Poll::Ready(status) = wait.as_mut().poll(context) {
                return Poll::Ready(Some(status));
            }
            if Pin::new(&mut *late).poll(context).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    };
    match ended {
        Some(status) => (false, status),
        None => {
            process.kill();
            (true, process.wait().await)
        }
    }
}

/// A request, read whole.
struct Request {
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl App {
    async fn answer(&self, connection: Connection) {
        let response = match read_request(&connection).await {
            Ok(request) => self.run(&connection, request).await,
            Err(status) => failure(status),
        };
        if connection.write_all(&response).await {
            connection.close(5 * SECOND).await;
        }
    }

    /// Runs the handler for `request`; the HTTP response.
    async fn run(&self, connection: &Connection, request: Request) -> Vec<u8> {
        let (process_input, input) = SocketEnd::pair();
        let (process_output, output) = SocketEnd::pair();
        let (process_errors, errors) = SocketEnd::pair();
        let query = request.target.split_once('?').map_or("", |(_, query)| query);
        let options = ProcessOptions {
            name: self.name.clone(),
            args: query.split('&').filter(|item| !item.is_empty()).map(str::to_string).collect(),
            environment: self.variables(connection, &request),
            stdio: Some(Stdio {
                input: process_input,
                output: process_output,
                error: process_errors,
            }),
            ..ProcessOptions::default()
        };
        let limits = [(Limit::MemoryBytes, MEMORY_BYTES), (Limit::CpuNanoseconds, CPU_NS)];
        let Ok(process) =
            self.kernel.spawn_with_limits(self.module.clone(), options, &limits, None)
        else {
            return failure(503);
        };
        let mut late = executor::sleep_until(now_ns() + WALL_NS);
        let ends = Ends { input, output, errors };
        let exchange = self.exchange(&ends, &request.body, &mut late).await;
        if exchange.timed_out || exchange.too_large {
            process.kill();
        }
        // Its output has ended, but it may go on (it closed stdout): within the same time.
        let (late_end, status) = end_within(&process, &mut late).await;
        match (exchange.timed_out || late_end, exchange.too_large, status.reason) {
            (true, _, _) => failure(504),
            (_, true, _) => failure(500),
            (_, _, ExitReason::OutOfResources) if process.over_cpu_limit() => failure(504),
            (_, _, ExitReason::Exited) => {
                cgi_response(&exchange.output).unwrap_or_else(|| failure(500))
            }
            _ => failure(500),
        }
    }

    /// Feeds the body to the handler and collects its output (its stderr to the console) until
    /// both its streams end, or `late`.
    async fn exchange(&self, ends: &Ends, body: &[u8], late: &mut Sleep) -> Exchange {
        let mut exchange = Exchange { output: Vec::new(), timed_out: false, too_large: false };
        let (mut written, mut input_done, mut out_done, mut errors_done) = (0, false, false, false);
        let mut buffer = vec![0u8; 16 << 10];
        poll_fn(|context| {
            while !input_done {
                if written == body.len() {
                    ends.input.shutdown_write();
                    input_done = true;
                    break;
                }
                match ends.input.poll_write(context, &body[written..]) {
                    Poll::Ready(Some(count)) => written += count,
                    // The handler will never read it: the rest is dropped.
                    Poll::Ready(None) => input_done = true,
                    Poll::Pending => break,
                }
            }
            while !out_done {
                match ends.output.poll_read(context, &mut buffer) {
                    Poll::Ready(0) => out_done = true,
                    Poll::Ready(count) if exchange.output.len() + count > OUTPUT_BYTES => {
                        exchange.too_large = true;
                        out_done = true;
                    }
                    Poll::Ready(count) => exchange.output.extend_from_slice(&buffer[..count]),
                    Poll::Pending => break,
                }
            }
            while !errors_done {
                match ends.errors.poll_read(context, &mut buffer) {
                    Poll::Ready(0) => errors_done = true,
                    Poll::Ready(count) => {
                        let text = String::from_utf8_lossy(&buffer[..count]);
                        crate::print!("{}: {text}", self.name);
                    }
                    Poll::Pending => break,
                }
            }
            if out_done && errors_done {
                return Poll::Ready(());
            }
            if Pin::new(&mut *late).poll(context).is_ready() {
                exchange.timed_out = true;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        exchange
    }

    /// The CGI meta-variables (RFC 3875), as `crates/serve/src/environment.rs` sets them.
    fn variables(&self, connection: &Connection, request: &Request) -> Vec<String> {
        let (remote, local) = connection.endpoints();
        let local_address =
            local.map_or_else(|| "10.0.2.15".to_string(), |end| end.addr.to_string());
        let (raw_path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
        let path = percent_decoded(raw_path);
        let header = |name: &str| -> Option<String> {
            let separator = if name == "cookie" { "; " } else { ", " };
            let values: Vec<String> = request
                .headers
                .iter()
                .filter(|(key, _)| key == name)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                .collect();
            (!values.is_empty()).then(|| values.join(separator))
        };
        let host = header("host");
        let server_name = host
            .as_deref()
            .map(|host| host.rsplit_once(':').map_or(host, |(name, _)| name).to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| local_address.clone());
        let authority = host.clone().unwrap_or_else(|| format!("{local_address}:{}", self.port));
        let remote_address = remote.map_or_else(String::new, |end| end.addr.to_string());
        let mut variables = vec![
            "GATEWAY_INTERFACE=CGI/1.1".to_string(),
            format!("SERVER_SOFTWARE=nebulet/{}", env!("CARGO_PKG_VERSION")),
            format!("SERVER_PROTOCOL=HTTP/1.{}", request.version),
            format!("SERVER_NAME={server_name}"),
            format!("SERVER_PORT={}", self.port),
            format!("REQUEST_METHOD={}", request.method),
            "SCRIPT_NAME=".to_string(),
            format!("PATH_INFO={path}"),
            format!("PATH_TRANSLATED={path}"),
            format!("X_RAW_PATH_INFO={raw_path}"),
            "X_MATCHED_ROUTE=/...".to_string(),
            format!("X_FULL_URL=http://{authority}{}", request.target),
            format!("QUERY_STRING={query}"),
            format!("REMOTE_ADDR={remote_address}"),
            format!("REMOTE_HOST={remote_address}"),
            format!("REMOTE_PORT={}", remote.map_or(0, |end| end.port)),
            format!("CONTENT_LENGTH={}", request.body.len()),
        ];
        if let Some(content_type) = header("content-type") {
            variables.push(format!("CONTENT_TYPE={content_type}"));
        }
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in &request.headers {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        for name in names {
            let key: String = name
                .chars()
                .map(
                    |character| if character == '-' { '_' } else { character.to_ascii_uppercase() },
                )
                .collect();
            variables.push(format!("HTTP_{key}={}", header(name).unwrap_or_default()));
        }
        variables
    }
}

/// `%XX` sequences decoded; invalid UTF-8 replaced.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&byte| (byte as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Reads a request head (and its Content-Length body) from `connection`, within HEADER_NS.
async fn read_request(connection: &Connection) -> Result<Request, u16> {
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; 4096];
    let mut deadline = executor::sleep_until(now_ns() + HEADER_NS);
    let mut head_length = None;
    let mut body_length = 0;
    loop {
        if let Some(head) = head_length
            && bytes.len() >= head + body_length
        {
            break;
        }
        let read = poll_fn(|context| {
            if Pin::new(&mut deadline).poll(context).is_ready() {
                return Poll::Ready(None);
            }
            connection.poll_read(context, &mut buffer).map(Some)
        })
        .await;
        match read {
            None => return Err(408),
            Some(0) => return Err(400),
            Some(count) => bytes.extend_from_slice(&buffer[..count]),
        }
        if head_length.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&bytes) {
                Ok(httparse::Status::Complete(length)) => {
                    head_length = Some(length);
                    body_length = declared_length(request.headers)?;
                }
                Ok(httparse::Status::Partial) if bytes.len() > HEAD_BYTES => return Err(431),
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(431),
                Err(_) => return Err(400),
            }
        }
    }
    let head = head_length.unwrap_or_default();
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(&bytes[..head]).map_err(|_| 400u16)?;
    Ok(Request {
        method: parsed.method.unwrap_or("GET").to_string(),
        target: parsed.path.unwrap_or("/").to_string(),
        version: parsed.version.unwrap_or(1),
        headers: parsed
            .headers
            .iter()
            .map(|header| (header.name.to_ascii_lowercase(), header.value.to_vec()))
            .collect(),
        body: bytes[head..head + body_length].to_vec(),
    })
}

/// The body length a head declares: 0 without Content-Length; 501 for a chunked body.
fn declared_length(headers: &[httparse::Header<'_>]) -> Result<usize, u16> {
    if headers.iter().any(|header| header.name.eq_ignore_ascii_case("transfer-encoding")) {
        return Err(501);
    }
    let Some(header) =
        headers.iter().find(|header| header.name.eq_ignore_ascii_case("content-length"))
    else {
        return Ok(0);
    };
    let length: usize = core::str::from_utf8(header.value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(400u16)?;
    if length > BODY_BYTES { Err(413) } else { Ok(length) }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn response(status: u16, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// An answer of the server's own: the status and its reason as plain text.
fn failure(status: u16) -> Vec<u8> {
    let text = format!("{status} {}\n", reason(status));
    response(
        status,
        &[("content-type".into(), "text/plain; charset=utf-8".into())],
        text.as_bytes(),
    )
}

/// A handler's CGI response (RFC 3875 section 6) as an HTTP response, by the rules of
/// `crates/serve/src/response.rs`: lines end in LF or CRLF; `Status: 404 Not Found` sets the
/// status, `Location` without it gives 302, else 200; at least one of Content-Type, Location or
/// Status; the framing fields are the server's. `None` if it is not one.
fn cgi_response(output: &[u8]) -> Option<Vec<u8>> {
    let mut status = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut start = 0;
    loop {
        let length = output[start..].iter().position(|&byte| byte == b'\n')?;
        let line = &output[start..start + length];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start += length + 1;
        if start > HEAD_BYTES + 1 {
            return None;
        }
        if line.is_empty() {
            break;
        }
        let line = core::str::from_utf8(line).ok()?;
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name.is_empty() || name.contains(' ') {
            return None;
        }
        if name == "status" {
            let code: u16 = value.split(' ').next()?.parse().ok()?;
            if !(100..=999).contains(&code) {
                return None;
            }
            status = Some(code);
            continue;
        }
        let server_field = matches!(
            name.as_str(),
            "connection"
                | "content-length"
                | "transfer-encoding"
                | "te"
                | "trailer"
                | "upgrade"
                | "keep-alive"
        );
        if !server_field {
            headers.push((name, value.to_string()));
        }
    }
    let location = headers.iter().any(|(name, _)| name == "location");
    let typed = headers.iter().any(|(name, _)| name == "content-type");
    if status.is_none() && !location && !typed {
        return None;
    }
    let status = status.unwrap_or(if location { 302 } else { 200 });
    Some(response(status, &headers, &output[start..]))
}
