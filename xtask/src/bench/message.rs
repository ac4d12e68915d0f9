//! Message round trip between two processes. Nebulet: the `bench` program (booted with the
//! `pong` app in its image) writes an 8-byte number on a channel to a `pong` process, which
//! answers the number + 1; blocking reads on both sides. Linux: this program writes 8 bytes to a
//! child process (itself, `xtask bench-echo`) on a pipe, and the child answers on another pipe.

use std::io::{ErrorKind, Read, Write};
use std::process::{Command, Stdio};

use super::nebulet::{Nebulet, parse_operations};
use super::{Comparison, Goal, Settings, Side, time_loop};

pub fn round_trip(nebulet: &Nebulet, settings: &Settings) -> Result<Comparison, String> {
    let count = settings.message_round_trips;
    let nebulet = Side::measure(
        "Nebulet: 8 bytes to another process and back, over a channel",
        settings.runs,
        || {
            let output = nebulet.boot("bench", &format!("roundtrip {count}"), &["pong"])?;
            parse_operations(&output, "roundtrip")
        },
    )?;
    let linux = Side::measure(
        "Linux: 8 bytes to another process and back, over two pipes (the faster of pinned to \
         one core and not)",
        settings.runs,
        || super::faster_pinned_or_not(|| pipe_round_trips(count)),
    )?;
    Ok(Comparison {
        operation: "message round trip",
        nebulet,
        linux,
        goal: Some(Goal::AtMost(750.0)),
    })
}

fn pipe_round_trips(count: u64) -> Result<(u64, f64), String> {
    let program = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    let mut child = Command::new(program)
        .arg("bench-echo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start the echo process: {error}"))?;
    let mut to_child = child.stdin.take().ok_or("no pipe to the child")?;
    let mut from_child = child.stdout.take().ok_or("no pipe from the child")?;
    let mut number = 0u64;
    let mut answer = [0u8; 8];
    let result = time_loop(count, || {
        to_child.write_all(&number.to_le_bytes()).expect("write to the echo process");
        from_child.read_exact(&mut answer).expect("read from the echo process");
        number += 1;
        assert_eq!(u64::from_le_bytes(answer), number, "the echo process answers the number + 1");
    });
    drop(to_child);
    let status = child.wait().map_err(|error| format!("waiting for the echo process: {error}"))?;
    if !status.success() {
        return Err(format!("the echo process ended with {status}"));
    }
    Ok(result)
}

/// `xtask bench-echo`: reads 8-byte little-endian numbers from stdin and writes each + 1 to
/// stdout, until stdin ends.
pub fn echo() -> Result<(), String> {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut number = [0u8; 8];
    loop {
        match input.read_exact(&mut number) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(format!("echo: read: {error}")),
        }
        let answer = u64::from_le_bytes(number).wrapping_add(1);
        output
            .write_all(&answer.to_le_bytes())
            .and_then(|()| output.flush())
            .map_err(|error| format!("echo: write: {error}"))?;
    }
}
