//! The Nebulet side of `cargo xtask bench` (see `docs/benchmarks.md`). Each case times a loop
//! of operations with `clock_monotonic` around the whole loop (after a warm-up) and prints one
//! line, `CASE: N OPS in T ns`, which xtask parses:
//!
//! - `syscall N`: `handle_close(0)`, the most trivial call (it only checks its argument);
//! - `clock N`: `clock_monotonic`, which reads the host's clock;
//! - `roundtrip N`: an 8-byte message to the `pong` app and its answer, over a channel;
//! - `spawn N`: `process_create` + `process_start` + wait for `TERMINATED` of a tiny module
//!   (one page of memory, an empty `_start`), compiled once with `module_compile`;
//! - `compute N LIMIT`: `compute(LIMIT)` of `compute.rs`, the code xtask also runs natively.
//!
//! The case comes from the arguments, or, when the program is started by `Kernel::boot` (which
//! it must be for `roundtrip`, to get the `pong` module), from the manifest text of its image.

mod compute;

use std::hint::black_box;

use sip::bootstrap::Image;
use sip::{Channel, DEADLINE_INFINITE, InfoProcessExt, Message, Module, Process, clock};

/// The child of `spawn`: the smallest process that has memory and runs.
const TINY_MODULE: &str = r#"(module (memory 1) (func (export "_start")))"#;

fn main() {
    let mut image = None;
    let mut words: Vec<String> = std::env::args().skip(1).collect();
    if words.is_empty() {
        let channel = sip::process::bootstrap_channel().expect("arguments or a bootstrap image");
        let received = Image::receive(&channel).expect("the bootstrap image");
        words =
            received.manifest().unwrap_or_default().split_whitespace().map(Into::into).collect();
        image = Some(received);
    }
    let number = |index: usize| -> u64 {
        words.get(index).and_then(|word| word.parse().ok()).expect("a count")
    };
    let case = words.first().map(String::as_str).unwrap_or_default();
    let (operations, nanoseconds) = match case {
        "syscall" => syscall(number(1)),
        "clock" => clock_calls(number(1)),
        "roundtrip" => round_trips(image.as_ref().expect("started with an image"), number(1)),
        "spawn" => spawns(number(1)),
        "compute" => computes(number(1), number(2) as usize),
        other => panic!("unknown case `{other}`"),
    };
    println!("{case}: {operations} ops in {nanoseconds} ns");
}

/// Times `body`, run `count` times after a tenth as many (at least one) untimed runs.
fn timed(count: u64, mut body: impl FnMut()) -> (u64, i64) {
    for _ in 0..count.div_ceil(10) {
        body();
    }
    let start = clock::monotonic();
    for _ in 0..count {
        body();
    }
    (count, clock::monotonic() - start)
}

fn syscall(count: u64) -> (u64, i64) {
    timed(count, || assert_eq!(nebulet_raw::handle_close(black_box(0)), 0))
}

fn clock_calls(count: u64) -> (u64, i64) {
    timed(count, || {
        black_box(nebulet_raw::clock_monotonic());
    })
}

fn round_trips(image: &Image, count: u64) -> (u64, i64) {
    let module = image.module("pong").expect("pong in the image");
    let (ours, theirs) = Channel::create().expect("channel_create");
    let pong = Process::create(module, "pong").expect("process_create");
    pong.start(Some(theirs.into_handle())).map_err(|failed| failed.error).expect("start pong");
    let mut message = Message::new();
    let mut number = 0u64;
    let result = timed(count, || {
        ours.write_blocking(&number.to_le_bytes(), Vec::new(), DEADLINE_INFINITE)
            .map_err(|failed| failed.error)
            .expect("write to pong");
        ours.read_blocking_into(&mut message, DEADLINE_INFINITE).expect("read from pong");
        number += 1;
        assert_eq!(message.bytes, number.to_le_bytes(), "pong answers the number + 1");
    });
    drop(ours);
    let info = pong.wait_terminated(DEADLINE_INFINITE).expect("pong ends");
    assert!(info.succeeded(), "pong {}", info.describe());
    result
}

fn spawns(count: u64) -> (u64, i64) {
    let module = Module::compile(TINY_MODULE.as_bytes()).expect("the tiny module compiles");
    timed(count, || {
        let child = Process::create(&module, "tiny").expect("process_create");
        child.start(None).map_err(|failed| failed.error).expect("process_start");
        let info = child.wait_terminated(DEADLINE_INFINITE).expect("wait for TERMINATED");
        assert!(info.succeeded(), "the tiny process {}", info.describe());
    })
}

fn computes(count: u64, limit: usize) -> (u64, i64) {
    let mut checksum = 0;
    let result = timed(count, || checksum ^= compute::compute(black_box(limit)));
    black_box(checksum);
    result
}
