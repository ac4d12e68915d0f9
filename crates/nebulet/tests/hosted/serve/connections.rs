//! Clients that send too much, too little or too slowly, and more requests than handlers.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nebulet_serve::Limits;

use super::{Client, Serving, limits, read_to_close};

/// The status code of a raw answer.
fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("none")
}

#[test]
fn a_body_past_its_limit_gets_413_declared_or_chunked_in_both_conventions() {
    for program in ["wagi", "http-echo"] {
        let serving = Serving::start(program, limits(|limits| limits.body_bytes = 1000));
        // Declared: refused before a byte of the body is read.
        let mut stream = serving.connect();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
            .unwrap();
        let answer = read_to_close(&mut stream);
        assert_eq!(status(&answer), "413", "{program}: {answer}");
        // Chunked: refused once the limit is crossed (the client sends the rest and the end).
        let mut stream = serving.connect();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        for _ in 0..3 {
            stream.write_all(format!("190\r\n{}\r\n", "x".repeat(400)).as_bytes()).unwrap();
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let answer = read_to_close(&mut stream);
        assert_eq!(status(&answer), "413", "{program}: {answer}");
        // Within the limit, chunked works.
        let mut stream = serving.connect();
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                  Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
            .unwrap();
        let answer = read_to_close(&mut stream);
        assert_eq!(status(&answer), "200", "{program}: {answer}");
        assert!(answer.ends_with("hello world"), "{program}: {answer}");
        if program == "wagi" {
            // A chunked body is read whole first: the handler is told its length.
            assert!(answer.to_lowercase().contains("x-content-length: 11"), "{answer}");
        }
        serving.wait_for(|statistics| statistics.running == 0);
        let log = serving.log();
        assert_eq!(log.iter().filter(|line| line.contains("\" 413 ")).count(), 2, "{log:#?}");
    }
}

#[test]
fn heads_too_large_get_431_and_malformed_ones_400() {
    let serving = Serving::start("wagi", Limits::default());
    let big = format!("GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(70 << 10));
    assert_eq!(status(&serving.raw(big.as_bytes())), "431");
    // A head that never ends is refused once it passes the limit, not when it ends.
    let mut stream = serving.connect();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut writer = stream.try_clone().unwrap();
    let endless = std::thread::spawn(move || {
        let line = format!("X-More: {}\r\n", "m".repeat(1000));
        while writer.write_all(line.as_bytes()).is_ok() {}
    });
    assert_eq!(status(&read_to_close(&mut stream)), "431");
    drop(stream);
    endless.join().unwrap();
    assert_eq!(status(&serving.raw(b"NOT AN HTTP REQUEST\r\n\r\n")), "400");
    assert_eq!(status(&serving.raw(b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n")), "400");
    // A NUL in the path would cut the handler's PATH_INFO short.
    let answer = serving.raw(b"GET /hello%00/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&answer), "400", "{answer}");
    // Rejected requests have an access line too.
    let log = serving.log();
    assert_eq!(log.iter().filter(|line| line.contains("\"-\" 431 ")).count(), 2, "{log:#?}");
    assert_eq!(log.iter().filter(|line| line.contains("\"-\" 400 ")).count(), 2, "{log:#?}");
}

#[test]
fn a_slow_head_gets_408_even_if_bytes_keep_coming_and_an_idle_connection_just_closes() {
    let serving =
        Serving::start("wagi", limits(|limits| limits.header_timeout = Duration::from_millis(300)));
    // Slowloris: a byte of the head now and then, never its end. The deadline counts from the
    // start of the head, so the trickle does not extend it.
    let mut stream = serving.connect();
    stream.write_all(b"GET /hello HTTP/1.1\r\n").unwrap();
    let mut trickle = stream.try_clone().unwrap();
    let answered = Arc::new(AtomicBool::new(false));
    let trickler = {
        let answered = answered.clone();
        std::thread::spawn(move || {
            while !answered.load(Ordering::Relaxed) && trickle.write_all(b"X").is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let answer = read_to_close(&mut stream);
    answered.store(true, Ordering::Relaxed);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    trickler.join().unwrap();
    drop(stream);
    // A connection that sends nothing is closed without an answer.
    let mut idle = serving.connect();
    assert_eq!(read_to_close(&mut idle), "");
    // So is a keep-alive connection after its request, once idle for the timeout.
    let mut stream = serving.connect();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("Hello, world!\n"));
    let log = serving.log();
    assert_eq!(log.iter().filter(|line| line.contains("\"-\" 408 ")).count(), 1, "{log:#?}");
}

#[test]
fn connection_close_closes_after_the_answer() {
    let serving = Serving::start("wagi", Limits::default());
    let answer = serving.raw(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.to_lowercase().contains("connection: close"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nHello, world!\n"), "{answer}");
}

/// Starts `/wait-body` with half its body on a raw connection: its handler runs until the rest
/// comes.
fn waiting_request(serving: &Serving) -> std::net::TcpStream {
    let mut stream = serving.connect();
    stream
        .write_all(
            b"POST /wait-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\
              Connection: close\r\n\r\n12345",
        )
        .unwrap();
    stream
}

/// Sends the rest of [`waiting_request`]'s body and checks its answer.
fn finish_waiting(mut stream: std::net::TcpStream) {
    stream.write_all(b"67890").unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("got 10 bytes\n"), "{answer}");
}

#[test]
fn past_the_concurrency_limit_requests_queue_and_past_the_queue_get_503() {
    let serving = Serving::start(
        "wagi",
        limits(|limits| {
            limits.concurrency = 1;
            limits.queue = 1;
        }),
    );
    let running = waiting_request(&serving);
    serving.wait_for(|statistics| statistics.running == 1);
    // The second waits in the queue...
    let address = serving.address;
    let queued = serving.system.emulator.runtime().spawn(async move {
        let mut client = Client::connect(address).await;
        client.send("GET", "/hello", &[], b"").await
    });
    serving.wait_for(|statistics| statistics.queued == 1);
    // ...and the third finds the queue full.
    assert_eq!(serving.request("GET", "/hello", b"").status, 503);
    finish_waiting(running);
    let reply = serving.block_on(queued).unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "Hello, world!\n"));
}

#[test]
fn a_request_that_waits_past_the_queue_timeout_gets_503() {
    let serving = Serving::start(
        "wagi",
        limits(|limits| {
            limits.concurrency = 1;
            limits.queue_timeout = Duration::from_millis(100);
        }),
    );
    let running = waiting_request(&serving);
    serving.wait_for(|statistics| statistics.running == 1);
    assert_eq!(serving.request("GET", "/hello", b"").status, 503);
    finish_waiting(running);
    assert_eq!(serving.request("GET", "/hello", b"").status, 200);
}

#[test]
fn a_client_that_goes_away_has_its_handler_killed_and_a_499_line() {
    let serving = Serving::start("wagi", limits(|limits| limits.wall_time = crate::PATIENCE));
    let mut stream = serving.connect();
    stream.write_all(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    serving.wait_for(|statistics| statistics.running == 1);
    drop(stream);
    serving.wait_for(|statistics| statistics.running == 0 && statistics.connections == 0);
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
    let log = serving.log();
    assert!(log.iter().any(|line| line.contains("\"GET /sleep\" 499 0 ")), "{log:#?}");
}
