//! What a handler is told of its request: CGI variables (RFC 3875, as WAGI sets them) and, for
//! native handlers, the request head as HTTP/1.1 text.

use std::net::SocketAddr;

use http::request::Parts;
use http::{HeaderMap, Version};

/// Where a request came from and arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peers {
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// The CGI meta-variables of a request, as `KEY=VALUE` strings. `content_length` is the body's
/// length when it is known (a Content-Length header, or a body read whole); CONTENT_LENGTH is
/// set exactly then.
pub(crate) fn cgi_variables(
    parts: &Parts,
    peers: Peers,
    content_length: Option<u64>,
) -> Vec<String> {
    let raw_path = parts.uri.path();
    let path = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let host = header_text(&parts.headers, "host");
    let server_name = host
        .as_deref()
        .map(host_name)
        .filter(|name| !name.is_empty())
        .map_or_else(|| peers.local.ip().to_string(), str::to_string);
    let authority = host.clone().unwrap_or_else(|| peers.local.to_string());
    let target = parts.uri.path_and_query().map_or(raw_path, |target| target.as_str());
    let mut variables = vec![
        "GATEWAY_INTERFACE=CGI/1.1".to_string(),
        format!("SERVER_SOFTWARE=nebulet/{}", env!("CARGO_PKG_VERSION")),
        format!("SERVER_PROTOCOL={}", protocol(parts.version)),
        format!("SERVER_NAME={server_name}"),
        format!("SERVER_PORT={}", peers.local.port()),
        format!("REQUEST_METHOD={}", parts.method),
        // The app serves every path: it is mounted at the root.
        "SCRIPT_NAME=".to_string(),
        format!("PATH_INFO={path}"),
        format!("PATH_TRANSLATED={path}"),
        format!("X_RAW_PATH_INFO={raw_path}"),
        "X_MATCHED_ROUTE=/...".to_string(),
        format!("X_FULL_URL=http://{authority}{target}"),
        format!("QUERY_STRING={}", parts.uri.query().unwrap_or("")),
        format!("REMOTE_ADDR={}", peers.remote.ip()),
        format!("REMOTE_HOST={}", peers.remote.ip()),
        format!("REMOTE_PORT={}", peers.remote.port()),
    ];
    if let Some(length) = content_length {
        variables.push(format!("CONTENT_LENGTH={length}"));
    }
    if let Some(content_type) = header_text(&parts.headers, "content-type") {
        variables.push(format!("CONTENT_TYPE={content_type}"));
    }
    // Every header as HTTP_NAME; repeated fields joined into one value of the same meaning
    // (RFC 3875 4.1.18). Authorization is passed too: the app is the whole server here.
    for name in parts.headers.keys() {
        let key: String = name
            .as_str()
            .chars()
            .map(|character| if character == '-' { '_' } else { character.to_ascii_uppercase() })
            .collect();
        let value = header_text(&parts.headers, name.as_str()).unwrap_or_default();
        variables.push(format!("HTTP_{key}={value}"));
    }
    variables
}

/// A header's values as one text: repeated fields joined with `, ` (`; ` for cookies), bytes
/// that are not UTF-8 replaced.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let separator = if name == "cookie" { "; " } else { ", " };
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(separator))
}

/// The host of a Host header value, without its port (`[::1]:80` gives `[::1]`).
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

fn protocol(version: Version) -> &'static str {
    if version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" }
}

/// The request head as HTTP/1.1 text, as a native handler receives it: the request line, then
/// each header field as `name: value` (names in lower case, in the order received, repeated
/// fields each on their own line), each line ending in CRLF, then an empty line.
pub(crate) fn head_text(parts: &Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |target| target.as_str());
    let mut text =
        format!("{} {target} {}\r\n", parts.method, protocol(parts.version)).into_bytes();
    for (name, value) in &parts.headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    fn peers() -> Peers {
        Peers { remote: "10.1.2.3:5555".parse().unwrap(), local: "127.0.0.1:8080".parse().unwrap() }
    }

    fn variable<'a>(variables: &'a [String], key: &str) -> Option<&'a str> {
        variables.iter().find_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn cgi_variables_describe_the_request_as_rfc_3875_and_wagi_do() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/notes/a%20b;c?x=1&y=%20")
            .header("Host", "example.com:3000")
            .header("Content-Type", "text/markdown")
            .header("Content-Length", "12")
            .header("X-Trace-Id", "abc")
            .header("Accept", "text/html")
            .header("Accept", "*/*")
            .header("Cookie", "a=1")
            .header("Cookie", "b=2");
        let variables = cgi_variables(&parts(request), peers(), Some(12));
        for (key, value) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/notes/a b;c"),
            ("X_RAW_PATH_INFO", "/notes/a%20b;c"),
            ("QUERY_STRING", "x=1&y=%20"),
            ("CONTENT_LENGTH", "12"),
            ("CONTENT_TYPE", "text/markdown"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "8080"),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "5555"),
            ("X_FULL_URL", "http://example.com:3000/notes/a%20b;c?x=1&y=%20"),
            ("HTTP_X_TRACE_ID", "abc"),
            ("HTTP_ACCEPT", "text/html, */*"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("HTTP_HOST", "example.com:3000"),
        ] {
            assert_eq!(variable(&variables, key), Some(value), "{key} in {variables:?}");
        }
        let names: Vec<&str> =
            variables.iter().map(|entry| entry.split_once('=').unwrap().0).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "each variable once: {names:?}");
    }

    #[test]
    fn without_a_body_or_a_host_the_server_describes_itself() {
        let request = http::Request::builder().uri("/").version(Version::HTTP_10);
        let variables = cgi_variables(&parts(request), peers(), None);
        assert_eq!(variable(&variables, "CONTENT_LENGTH"), None);
        assert_eq!(variable(&variables, "CONTENT_TYPE"), None);
        assert_eq!(variable(&variables, "SERVER_NAME"), Some("127.0.0.1"));
        assert_eq!(variable(&variables, "SERVER_PROTOCOL"), Some("HTTP/1.0"));
        assert_eq!(variable(&variables, "QUERY_STRING"), Some(""));
    }

    #[test]
    fn host_names_lose_their_port_but_not_their_brackets() {
        assert_eq!(host_name("example.com:80"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn the_native_head_is_the_request_line_and_the_fields_in_order() {
        let request = http::Request::builder()
            .method("PUT")
            .uri("/echo?loud=1")
            .header("Host", "localhost")
            .header("X-A", "1")
            .header("X-A", "2");
        assert_eq!(
            String::from_utf8(head_text(&parts(request))).unwrap(),
            "PUT /echo?loud=1 HTTP/1.1\r\nhost: localhost\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }
}
