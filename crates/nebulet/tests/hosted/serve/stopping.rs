//! The shutdown: accept no more, close idle connections, finish the requests read, kill what
//! still runs at the end of the grace (503); and the command's SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use super::{Serving, limits, read_to_close};

#[test]
fn a_stopping_server_closes_idle_connections_and_finishes_requests_already_read() {
    let mut serving =
        Serving::start("wagi", limits(|limits| limits.shutdown_grace = crate::PATIENCE));
    // An idle keep-alive connection, after one request.
    let mut idle = serving.connect();
    idle.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = [0u8; 4096];
    let count = std::io::Read::read(&mut idle, &mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..count]).ends_with("Hello, world!\n"));
    // A request whose handler waits for the rest of its body.
    let mut busy = serving.connect();
    busy.write_all(b"POST /wait-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345")
        .unwrap();
    serving.wait_for(|statistics| statistics.running == 1);
    serving.signal_stop();
    // The idle connection is closed without a word.
    assert_eq!(read_to_close(&mut idle), "");
    // The busy one is finished.
    busy.write_all(b"67890").unwrap();
    let answer = read_to_close(&mut busy);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("got 10 bytes\n"), "{answer}");
    serving.stop();
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(serving.address).is_err());
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
}

#[test]
fn handlers_still_running_at_the_end_of_the_grace_are_killed_and_answered_503() {
    let mut serving = Serving::start(
        "wagi",
        limits(|limits| {
            limits.shutdown_grace = Duration::from_secs(1);
            limits.wall_time = crate::PATIENCE;
            limits.concurrency = 1;
            limits.queue_timeout = crate::PATIENCE;
        }),
    );
    let mut sleeping = serving.connect();
    sleeping.write_all(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    serving.wait_for(|statistics| statistics.running == 1);
    // One more waits for a handler slot: it is read, so it is answered too.
    let mut queued = serving.connect();
    queued.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    serving.wait_for(|statistics| statistics.queued == 1);
    serving.signal_stop();
    for stream in [&mut sleeping, &mut queued] {
        let answer = read_to_close(stream);
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    }
    serving.stop();
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
}

#[test]
fn the_command_serves_until_sigterm_then_exits_0() {
    let directory = std::env::temp_dir().join(format!("nebulet-serve-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let app = directory.join("wagi.wasm");
    std::fs::write(&app, nebulet::image::find("wagi").unwrap()).unwrap();
    let mut child = crate::nebulet_command()
        .arg("serve")
        .arg(&app)
        .args(["--addr", "127.0.0.1:0", "--cpu-time", "2s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    // nebulet serve: wagi (wagi) on http://127.0.0.1:PORT
    let address = first.trim().rsplit("http://").next().unwrap().to_string();
    assert!(first.starts_with("nebulet serve: wagi (wagi) on http://"), "{first}");
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(crate::PATIENCE)).unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("Hello, world!\n"));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("\"GET /hello\" 200 14 "), "the access line: {rest}");
}
