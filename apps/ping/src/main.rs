//! `ping`: starts `pong` (from the image on its bootstrap channel) with a channel of its own,
//! measures 1000 round trips of a number that pong answers + 1, then asks the `echo` service a
//! few questions (and passes a handle through it). Waits for pong to end; exits 0, or 1 on any
//! error.

use std::time::Duration;

use sip::bootstrap::Image;
use sip::{
    Channel, DEADLINE_INFINITE, Event, InfoProcessExt, Message, Process, Rights, clock, service,
};

/// How many round trips to measure.
const ROUND_TRIPS: u64 = 1000;

/// How long any single answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    if let Err(message) = run() {
        println!("ping: {message}");
        sip::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let bootstrap = sip::process::bootstrap_channel().ok_or(sip::process::NO_BOOTSTRAP)?;
    let image =
        Image::receive(&bootstrap).map_err(|error| format!("cannot read the image: {error}"))?;
    let module = image.module("pong").ok_or("no app pong in the image")?;

    let (ours, theirs) = Channel::create().map_err(|error| format!("channel_create: {error}"))?;
    let pong =
        Process::create(module, "pong").map_err(|error| format!("process_create: {error}"))?;
    pong.start(Some(theirs.into_handle()))
        .map_err(|failed| format!("process_start: {}", failed.error))?;
    println!("ping: started pong");

    let mut message = Message::new();
    let mut total_ns: i64 = 0;
    for number in 0..ROUND_TRIPS {
        let before = clock::monotonic();
        ours.write_blocking(&number.to_le_bytes(), Vec::new(), DEADLINE_INFINITE)
            .map_err(|failed| format!("write to pong: {}", failed.error))?;
        ours.read_blocking_into(&mut message, clock::deadline_after(ANSWER_TIMEOUT))
            .map_err(|error| format!("read from pong (round trip {number}): {error}"))?;
        total_ns += clock::monotonic() - before;
        let reply = <[u8; 8]>::try_from(message.bytes.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| format!("pong answered {} bytes", message.bytes.len()))?;
        if reply != number + 1 {
            return Err(format!("pong answered {reply} to {number}"));
        }
    }
    println!("ping: {ROUND_TRIPS} round trips, mean {} ns", total_ns / ROUND_TRIPS as i64);

    use_echo()?;

    drop(ours); // pong sees PEER_CLOSED and exits
    let info = pong
        .wait_terminated(clock::deadline_after(ANSWER_TIMEOUT))
        .map_err(|error| format!("waiting for pong: {error}"))?;
    if !info.succeeded() {
        return Err(format!("pong {}", info.describe()));
    }
    println!("ping: pong {}", info.describe());
    Ok(())
}

/// A few requests to the echo service, and one handle through it.
fn use_echo() -> Result<(), String> {
    let echo =
        service::connect("echo").map_err(|error| format!("cannot connect to echo: {error}"))?;
    for text in ["hello", "from ping", "over a channel"] {
        let reply = echo
            .call(text.as_bytes(), Vec::new(), clock::deadline_after(ANSWER_TIMEOUT))
            .map_err(|error| format!("echo: {error}"))?;
        let answer = String::from_utf8_lossy(&reply.bytes);
        if answer != text {
            return Err(format!("echo answered {answer:?} to {text:?}"));
        }
        println!("ping: echo answered \"{answer}\"");
    }

    // A handle makes the round trip too: the object that comes back is the one sent.
    let event = Event::create().map_err(|error| format!("event_create: {error}"))?;
    let koid = event.as_handle().info().map_err(|error| format!("event info: {error}"))?.koid;
    let sent =
        event.duplicate(Rights::SAME_RIGHTS).map_err(|error| format!("duplicate: {error}"))?;
    let reply = echo
        .call(b"handle", vec![sent.into_handle()], clock::deadline_after(ANSWER_TIMEOUT))
        .map_err(|error| format!("echo with a handle: {error}"))?;
    let [back] = reply.handles.as_slice() else {
        return Err(format!("echo returned {} handles instead of 1", reply.handles.len()));
    };
    let back_koid = back.info().map_err(|error| format!("returned handle info: {error}"))?.koid;
    if back_koid != koid {
        return Err(format!("echo returned object {back_koid} instead of {koid}"));
    }
    println!("ping: echo sent back a handle to the same event (kernel object id {koid})");
    Ok(())
}
