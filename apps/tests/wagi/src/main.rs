//! Test program: a WAGI handler for `nebulet serve` (a plain WASI program) whose PATH_INFO
//! picks what it does, so one module shows every answer and every failure:
//!
//! - `/hello`: 200, `Hello, world!`.
//! - `/env`: 200, its environment (`KEY=VALUE` lines), then `ARGS=` and its arguments.
//! - `/echo`: 200, the request body, with its Content-Type and `X-Content-Length`.
//! - `/status`: the status of `?code=N` (`Status: N`).
//! - `/redirect`: `Location: /elsewhere` without a status (302).
//! - `/stderr`: two lines to stderr, then 200.
//! - `/big`: 200 with `?bytes=N` bytes of body (`0123456789` repeated).
//! - `/big-then-trap`: a 200 head and 200 KiB of body, then a trap.
//! - `/wait-body`: reads its whole body before it answers (`got N bytes`).
//! - `/trap`: panics before writing anything.
//! - `/spin`: spins forever (CPU time).
//! - `/sleep`: sleeps forever (wall time).
//! - `/grow`: allocates memory until it fails.
//! - `/garbage`: writes output that is not a CGI response.
//! - `/nothing`: writes nothing and exits 0.

use std::io::{Read, Write};
use std::time::Duration;

fn main() {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let parameter = |name: &str| {
        query
            .split('&')
            .find_map(|item| item.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let mut out = std::io::stdout().lock();
    match path.as_str() {
        "/hello" => print!("Content-Type: text/plain\n\nHello, world!\n"),
        "/env" => {
            print!("Content-Type: text/plain\n\n");
            for (key, value) in std::env::vars() {
                println!("{key}={value}");
            }
            println!("ARGS={}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
        }
        "/echo" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).expect("stdin");
            let content_type =
                std::env::var("CONTENT_TYPE").unwrap_or("application/octet-stream".into());
            let length = std::env::var("CONTENT_LENGTH").unwrap_or("none".into());
            let _ = write!(out, "Content-Type: {content_type}\nX-Content-Length: {length}\n\n");
            let _ = out.write_all(&body);
        }
        "/status" => {
            let code = parameter("code").unwrap_or("200".into());
            print!("Status: {code}\nContent-Type: text/plain\n\nstatus {code}\n");
        }
        "/redirect" => print!("Location: /elsewhere\n\n"),
        "/stderr" => {
            eprintln!("first line to stderr");
            eprintln!("second line to stderr");
            print!("Content-Type: text/plain\n\nlogged\n");
        }
        "/big" => {
            let bytes: usize = parameter("bytes").and_then(|bytes| bytes.parse().ok()).unwrap_or(0);
            let _ = write!(out, "Content-Type: application/octet-stream\n\n");
            write_pattern(&mut out, bytes);
        }
        "/big-then-trap" => {
            let _ = write!(out, "Content-Type: application/octet-stream\n\n");
            write_pattern(&mut out, 200 << 10);
            let _ = out.flush();
            panic!("trapped after the head");
        }
        "/wait-body" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).expect("stdin");
            print!("Content-Type: text/plain\n\ngot {} bytes\n", body.len());
        }
        "/trap" => panic!("the handler trapped on purpose"),
        "/spin" => {
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "/sleep" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "/grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/garbage" => print!("this is not a header line\n\nbody\n"),
        "/nothing" => {}
        _ => print!("Status: 404 Not Found\nContent-Type: text/plain\n\nno route {path}\n"),
    }
}

/// Writes `bytes` bytes of `0123456789` repeated.
fn write_pattern(out: &mut impl Write, bytes: usize) {
    let pattern: Vec<u8> = (0..bytes).map(|index| b'0' + (index % 10) as u8).collect();
    let _ = out.write_all(&pattern);
}
