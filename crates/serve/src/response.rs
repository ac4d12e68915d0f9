//! The CGI response a handler writes (RFC 3875 section 6): header lines, an empty line, the
//! body. Both conventions use it.
//!
//! Parsed by hand: CGI response headers are not an HTTP message (no status line, lines may end
//! in a bare LF, `Status` is a pseudo-header), so an HTTP parser does not fit.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

/// A CGI response's header block, turned into an HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// How far a handler's output is understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The header block has not ended yet.
    Incomplete,
    /// The head, and where the body starts in the output.
    Complete(Head, usize),
}

/// Header fields the server owns: the framing and the connection's own (the handler's would
/// conflict with how the server sends the body).
fn server_field(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "content-length"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "keep-alive"
    )
}

/// Parses the start of a handler's output. Lines end in LF or CRLF. `Status: 404 Not Found`
/// sets the status; `Location` without `Status` gives 302; otherwise 200. A response needs at
/// least one of Content-Type, Location or Status. The header block may take at most `limit`
/// bytes. An error is the one-line reason the response is not valid.
pub(crate) fn parse(output: &[u8], limit: usize) -> Result<Parsed, String> {
    let mut status = None;
    let mut headers = HeaderMap::new();
    let mut start = 0;
    loop {
        let Some(length) = output[start..].iter().position(|&byte| byte == b'\n') else {
            return if output.len() > limit {
                Err(format!("the header block is longer than {limit} bytes"))
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        let line = &output[start..start + length];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        start += length + 1;
        if start > limit.saturating_add(1) {
            return Err(format!("the header block is longer than {limit} bytes"));
        }
        if line.is_empty() {
            break;
        }
        let (name, value) = field(line)?;
        if name == "status" {
            if status.is_some() {
                return Err("more than one Status field".into());
            }
            status = Some(status_code(&value)?);
        } else if !server_field(&name) {
            headers.append(name, value);
        }
    }
    let location = headers.contains_key(header::LOCATION);
    if status.is_none() && !location && !headers.contains_key(header::CONTENT_TYPE) {
        return Err("no Content-Type, Location or Status field".into());
    }
    let status = status.unwrap_or(if location { StatusCode::FOUND } else { StatusCode::OK });
    Ok(Parsed::Complete(Head { status, headers }, start))
}

/// One `Name: value` line.
fn field(line: &[u8]) -> Result<(HeaderName, HeaderValue), String> {
    let shown = || String::from_utf8_lossy(line).chars().take(80).collect::<String>();
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or_else(|| format!("a header line without a colon: `{}`", shown()))?;
    let name = HeaderName::from_bytes(&line[..colon])
        .map_err(|_| format!("an invalid header name: `{}`", shown()))?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
        .map_err(|_| format!("an invalid header value: `{}`", shown()))?;
    Ok((name, value))
}

/// `Status: 404` or `Status: 404 Not Found`: a final status, 200 to 999.
fn status_code(value: &HeaderValue) -> Result<StatusCode, String> {
    let text = value.to_str().unwrap_or("");
    let code = text.split_once(' ').map_or(text, |(code, _)| code);
    StatusCode::from_bytes(code.as_bytes())
        .ok()
        .filter(|status| status.as_u16() >= 200)
        .ok_or_else(|| format!("an invalid Status: `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(output: &str) -> (Head, String) {
        match parse(output.as_bytes(), 1024) {
            Ok(Parsed::Complete(head, start)) => (head, output[start..].to_string()),
            other => panic!("{output:?} gave {other:?}"),
        }
    }

    #[test]
    fn a_content_type_and_a_body_are_a_200() {
        let (head, body) = complete("Content-Type: text/plain\n\nhello\n");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(body, "hello\n");
    }

    #[test]
    fn status_sets_the_code_and_crlf_lines_work() {
        let (head, body) =
            complete("Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-Why:  gone \r\n\r\n");
        assert_eq!(head.status, StatusCode::NOT_FOUND);
        assert_eq!(head.headers["x-why"], "gone");
        assert_eq!(body, "");
        assert_eq!(complete("Status: 204\n\n").0.status, StatusCode::NO_CONTENT);
    }

    #[test]
    fn location_without_status_redirects_with_302() {
        let (head, _) = complete("Location: /elsewhere\n\n");
        assert_eq!(head.status, StatusCode::FOUND);
        assert_eq!(head.headers[header::LOCATION], "/elsewhere");
        let (head, _) = complete("Status: 301 Moved\nLocation: /new\n\n");
        assert_eq!(head.status, StatusCode::MOVED_PERMANENTLY);
    }

    #[test]
    fn framing_fields_are_the_servers_and_repeated_fields_stay() {
        let (head, _) = complete(
            "Content-Type: a/b\nContent-Length: 99\nTransfer-Encoding: chunked\n\
             Connection: close\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n",
        );
        assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
        assert!(!head.headers.contains_key(header::TRANSFER_ENCODING));
        assert!(!head.headers.contains_key(header::CONNECTION));
        assert_eq!(head.headers.get_all(header::SET_COOKIE).iter().count(), 2);
    }

    #[test]
    fn an_unfinished_block_waits_until_it_passes_the_limit() {
        assert_eq!(parse(b"", 16), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"Content-Type: a/b\n", 64), Ok(Parsed::Incomplete));
        assert!(parse(&[b'x'; 17], 16).is_err());
        let long = format!("Content-Type: a/b\nX-Long: {}\n\n", "y".repeat(40));
        assert!(parse(long.as_bytes(), 32).is_err());
        assert!(matches!(parse(long.as_bytes(), long.len()), Ok(Parsed::Complete(..))));
    }

    #[test]
    fn invalid_responses_say_why() {
        for output in [
            "\n\nbody",
            "X-Only: 1\n\n",
            "Content-Type text/plain\n\n",
            "Bad Name: 1\nContent-Type: a/b\n\n",
            "Status: abc\n\n",
            "Status: 100 Continue\n\n",
            "Status: 200\nStatus: 404\n\n",
            "Content-Type: a/b\nX-Nul: a\u{0}b\n\n",
        ] {
            let reason = parse(output.as_bytes(), 1024).expect_err(output);
            assert!(!reason.is_empty() && !reason.contains('\n'), "{output:?}: {reason}");
        }
    }
}
