//! HTTP handlers for `nebulet serve` (its native convention): the request a handler process is
//! started for, its body to read and its response to write, both streaming.
//!
//! The server starts one process per request. Its bootstrap channel holds one message: the
//! request head as HTTP/1.1 text (the request line, then `name: value` lines with lower-case
//! names, CRLF line ends, an empty line), with two socket handles: the request body (read it to
//! the end of the stream) and the response. The response is CGI-style: header lines such as
//! `Status: 404 Not Found` and `Content-Type: text/plain`, an empty line, then the body. See
//! `docs/abi.md`, "HTTP handlers".
//!
//! ```no_run
//! use std::io::Write;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut request = sip::http::Request::from_bootstrap()?;
//!     let greeting = format!("Hello from {}\n", request.head.path());
//!     request.response.start(200, &[("Content-Type", "text/plain")])?;
//!     request.response.write_all(greeting.as_bytes())?;
//!     Ok(())
//! }
//! ```

use std::io;

use nebulet_abi::{DEADLINE_INFINITE, Error};

use crate::channel::Message;
use crate::socket::Socket;

/// The request a handler was started for.
#[derive(Debug)]
pub struct Request {
    /// The request line and the header fields.
    pub head: Head,
    /// The request body, to read to its end.
    pub body: Body,
    /// Where the response goes.
    pub response: Response,
}

impl Request {
    /// Reads the request from the bootstrap channel (waiting for it). [`Error::NotFound`]
    /// without a bootstrap channel; [`Error::InvalidArgs`] if its message is not a request.
    pub fn from_bootstrap() -> Result<Request, Error> {
        let channel = crate::process::bootstrap_channel().ok_or(Error::NotFound)?;
        Request::from_message(channel.read_blocking(DEADLINE_INFINITE)?)
    }

    /// The request a bootstrap message carries: the head text with the body and response
    /// sockets. [`Error::InvalidArgs`] if it is not one.
    pub fn from_message(message: Message) -> Result<Request, Error> {
        let head = Head::parse(&message.bytes).ok_or(Error::InvalidArgs)?;
        let [body, response]: [crate::Handle; 2] =
            message.handles.try_into().map_err(|_| Error::InvalidArgs)?;
        Ok(Request {
            head,
            body: Body { socket: Socket::from_handle(body) },
            response: Response { socket: Socket::from_handle(response), started: false },
        })
    }
}

/// A request head: the request line and the header fields, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Parses the head text the server sends (it normalises what the client sent, so this
    /// reads only that shape). Bytes that are not UTF-8 are replaced.
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.strip_suffix("\r\n\r\n")?.split("\r\n");
        let mut request_line = lines.next()?.splitn(3, ' ');
        let (method, target, version) =
            (request_line.next()?, request_line.next()?, request_line.next()?);
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_string(), value.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Head {
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
            headers,
        })
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: the path and the query, e.g. `/notes?page=2`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path of the target (still percent-encoded).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    /// The query of the target, after `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// `HTTP/1.1` or `HTTP/1.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The value of the first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    /// Every header field, in order, as `(lower-case name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// The request body: read it to its end (`read` gives 0).
#[derive(Debug)]
pub struct Body {
    socket: Socket,
}

impl Body {
    /// The socket it arrives on.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl io::Read for Body {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.socket.read_wait(buffer).map_err(io::Error::other)
    }
}

/// The response: [`Response::start`] writes its head, then `write` its body. The response ends
/// when the process does (or closes the socket).
#[derive(Debug)]
pub struct Response {
    socket: Socket,
    started: bool,
}

impl Response {
    /// Writes the head: the status and the header fields (a Content-Type, usually).
    /// [`Error::BadState`] if it was written already.
    pub fn start(&mut self, status: u16, headers: &[(&str, &str)]) -> Result<(), Error> {
        if self.started {
            return Err(Error::BadState);
        }
        let mut head = format!("Status: {status}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.socket.write_all(head.as_bytes())?;
        self.started = true;
        Ok(())
    }

    /// The socket it goes out on.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl io::Write for Response {
    /// Writes body bytes; an error before [`Response::start`].
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.started {
            return Err(io::Error::other("the response head is not written yet"));
        }
        self.socket.write_all(bytes).map_err(io::Error::other)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_reads_as_the_server_writes_it() {
        let head = Head::parse(
            b"POST /notes/a?page=2&x=y HTTP/1.1\r\nhost: localhost\r\nx-a: 1\r\nx-a: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method(), "POST");
        assert_eq!(head.target(), "/notes/a?page=2&x=y");
        assert_eq!(head.path(), "/notes/a");
        assert_eq!(head.query(), Some("page=2&x=y"));
        assert_eq!(head.version(), "HTTP/1.1");
        assert_eq!(head.header("Host"), Some("localhost"));
        assert_eq!(head.header("x-a"), Some("1"));
        assert_eq!(head.headers().count(), 3);
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn other_bytes_are_not_a_head() {
        for bytes in
            [&b""[..], b"GET / HTTP/1.1\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n"]
        {
            assert_eq!(Head::parse(bytes), None, "{:?}", String::from_utf8_lossy(bytes));
        }
    }
}
