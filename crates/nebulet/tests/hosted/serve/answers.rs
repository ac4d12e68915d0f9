//! What handlers answer: both conventions, the CGI response forms, the examples.

use nebulet_serve::{App, Convention, Limits};

use super::{Serving, limits};
use crate::System;

#[test]
fn the_convention_is_chosen_by_the_imports() {
    let system = System::new();
    for (program, convention) in [
        ("http-echo", Convention::Native),
        ("wagi", Convention::Wagi),
        ("markdown", Convention::Wagi),
        ("json", Convention::Wagi),
    ] {
        assert_eq!(App::new(system.program(program), program, None).convention(), convention);
    }
    let forced = App::new(system.program("wagi"), "wagi", Some(Convention::Native));
    assert_eq!(forced.convention(), Convention::Native);
}

#[test]
fn a_wagi_handler_gets_the_request_as_cgi_variables_and_stdin() {
    let serving = Serving::start("wagi", Limits::default());
    let mut client = serving.client();
    let reply = serving.block_on(client.send(
        "GET",
        "/env?first=1&second=a%20b",
        &[("X-Custom", "yes"), ("Accept", "text/plain")],
        b"",
    ));
    assert_eq!(reply.status, 200, "{reply:?}");
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "REQUEST_METHOD=GET".to_string(),
        "PATH_INFO=/env".to_string(),
        "QUERY_STRING=first=1&second=a%20b".to_string(),
        "HTTP_X_CUSTOM=yes".to_string(),
        "HTTP_ACCEPT=text/plain".to_string(),
        "GATEWAY_INTERFACE=CGI/1.1".to_string(),
        "SERVER_PROTOCOL=HTTP/1.1".to_string(),
        "SCRIPT_NAME=".to_string(),
        "REMOTE_ADDR=127.0.0.1".to_string(),
        format!("SERVER_PORT={}", serving.address.port()),
        "SERVER_NAME=test".to_string(),
        "ARGS=first=1 second=a%20b".to_string(),
    ] {
        assert!(lines.contains(&expected.as_str()), "{expected} in\n{text}");
    }
    assert!(!text.contains("CONTENT_LENGTH="), "no body, no CONTENT_LENGTH:\n{text}");
    // The body on stdin, its length and type in the environment, on the same connection.
    let reply = serving.block_on(client.send(
        "POST",
        "/echo",
        &[("Content-Type", "text/x-test")],
        b"the request body",
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "the request body");
    assert_eq!(reply.header("content-type"), Some("text/x-test"));
    assert_eq!(reply.header("x-content-length"), Some("16"));
}

#[test]
fn cgi_status_and_location_set_the_answer() {
    let serving = Serving::start("wagi", Limits::default());
    let mut client = serving.client();
    let reply = serving.block_on(client.send("GET", "/status?code=404", &[], b""));
    assert_eq!((reply.status, reply.text().as_str()), (404, "status 404\n"));
    let reply = serving.block_on(client.send("GET", "/status?code=201", &[], b""));
    assert_eq!(reply.status, 201);
    let reply = serving.block_on(client.send("GET", "/redirect", &[], b""));
    assert_eq!((reply.status, reply.header("location")), (302, Some("/elsewhere")));
    let reply = serving.block_on(client.send("HEAD", "/hello", &[], b""));
    assert_eq!((reply.status, reply.text().as_str()), (200, ""));
}

#[test]
fn a_long_response_streams_past_the_held_part_whole() {
    let serving = Serving::start("wagi", Limits::default());
    let reply = serving.request("GET", "/big?bytes=1000000", b"");
    assert_eq!(reply.status, 200);
    let body = reply.body.unwrap();
    assert_eq!(body.len(), 1_000_000);
    assert!(body.iter().enumerate().all(|(index, byte)| *byte == b'0' + (index % 10) as u8));
}

#[test]
fn handler_stderr_goes_to_the_log_prefixed_and_each_request_has_an_access_line() {
    let serving = Serving::start("wagi", Limits::default());
    let reply = serving.request("GET", "/stderr", b"");
    assert_eq!((reply.status, reply.text().as_str()), (200, "logged\n"));
    // The access line is written when hyper is done with the answer; the client has closed its
    // connection, so once the server's side is closed too, the line is there.
    serving.wait_for(|statistics| statistics.running == 0 && statistics.connections == 0);
    let log = serving.log();
    let first = log.iter().position(|line| line.ends_with(": first line to stderr"));
    let second = log.iter().position(|line| line.ends_with(": second line to stderr"));
    assert!(first.is_some() && first < second, "{log:#?}");
    assert!(log[first.unwrap()].starts_with("wagi#1: "), "{log:#?}");
    let access = log.iter().find(|line| line.contains("\"GET /stderr\"")).expect("an access line");
    let fields: Vec<&str> = access.split(' ').collect();
    // 127.0.0.1 "GET /stderr" 200 7 1.234ms
    assert_eq!(fields[0], "127.0.0.1", "{access}");
    assert_eq!(&fields[3..5], ["200", "7"], "{access}");
    assert!(fields[5].ends_with("ms"), "{access}");
}

#[test]
fn a_native_handler_streams_the_body_back_and_reads_the_head() {
    let serving = Serving::start("http-echo", Limits::default());
    // More than the sockets and the held part of the response together, so both directions
    // stream while the handler runs.
    let body: Vec<u8> = (0..3_000_000u32).map(|index| (index * 7) as u8).collect();
    let mut client = serving.client();
    let reply = serving.block_on(client.send(
        "PUT",
        "/upload/a?x=1",
        &[("Content-Type", "application/x-test")],
        &body,
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-line"), Some("PUT /upload/a?x=1 HTTP/1.1"));
    assert_eq!(reply.header("content-type"), Some("application/x-test"));
    let echoed = reply.body.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the same bytes in the same order");
    // A second request on the same connection is a fresh process.
    let reply = serving.block_on(client.send("POST", "/", &[], b"again"));
    assert_eq!((reply.status, reply.text().as_str()), (200, "again"));
}

#[test]
fn the_examples_render_markdown_and_transform_json() {
    let serving = Serving::start("markdown", Limits::default());
    let reply = serving.request("POST", "/?page", b"# Title\n\nSome *emphasis* and ~~not~~.\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
    let html = reply.text();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<h1>Title</h1>") && html.contains("<em>emphasis</em>"), "{html}");
    assert!(html.contains("<del>not</del>"), "{html}");
    assert_eq!(serving.request("GET", "/", b"").status, 405);
    drop(serving);

    let serving = Serving::start("json", Limits::default());
    let reply = serving.request("POST", "/", br#"{"b": [1, 2, {"c": null}], "a": "x"}"#);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.text().trim(),
        r#"{"counts":{"array":1,"null":1,"number":2,"object":2,"string":1},"depth":3,"value":{"a":"x","b":[1,2,{"c":null}]}}"#
    );
    let reply = serving.request("POST", "/", b"{not json");
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("\"error\""), "{}", reply.text());
}

#[test]
fn limits_are_per_request_so_one_request_does_not_see_another() {
    // The same handler, one request after the other on one connection: each its own process,
    // so a request's environment never leaks into the next.
    let serving = Serving::start("wagi", limits(|limits| limits.concurrency = 1));
    let mut client = serving.client();
    let first = serving.block_on(client.send("GET", "/env", &[("X-Only-First", "1")], b""));
    let second = serving.block_on(client.send("GET", "/env", &[], b""));
    assert!(first.text().contains("HTTP_X_ONLY_FIRST=1"));
    assert!(!second.text().contains("HTTP_X_ONLY_FIRST"), "{}", second.text());
}
