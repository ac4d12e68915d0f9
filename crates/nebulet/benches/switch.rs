//! Thread switch cost: Nebulet's green threads against two Linux threads, in the same run.
//!
//! Both sides run the same ping-pong: two threads hand a turn back and forth through a futex
//! (Nebulet: `futex_wait`/`futex_wake` between coroutine threads of one process; Linux:
//! `std::thread::park`/`unpark`, which are futex calls, between two OS threads). Each hand-off
//! is one switch. Run with `cargo bench --bench switch [-- ROUNDS]`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use nebulet_abi::ExitReason;
use nebulet_hosted::{Console, Emulator, ProcessOptions};

fn main() {
    let rounds: u32 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(200_000);
    eprintln!("switch benchmark: {rounds} round trips each (2 switches per round trip)");
    let green = green_threads(rounds);
    let linux = os_threads(rounds);
    println!("| ping-pong between two threads | ns per switch |");
    println!("|---|---|");
    println!("| Nebulet green threads (one process) | {green:.1} |");
    println!("| Linux threads (park/unpark futex) | {linux:.1} |");
    println!("| ratio (Linux / Nebulet) | {:.1}x |", linux / green);
}

fn green_threads(rounds: u32) -> f64 {
    let console = Arc::new(Mutex::new(Vec::new()));
    let emulator = Emulator::new(Console::Buffer(console.clone())).expect("the kernel starts");
    let bytes = nebulet::image::find("threaded").expect("the threaded test program is built");
    let module = emulator.compile(bytes).expect("it compiles");
    let options = ProcessOptions {
        name: "threaded".into(),
        args: vec!["pingpong".into(), rounds.to_string()],
        ..Default::default()
    };
    let status = emulator.run(module, options);
    let output = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    assert_eq!(status.reason, ExitReason::Exited, "{output}");
    // "pingpong: N switches in T ns, X ns per switch"
    let line =
        output.lines().find(|line| line.starts_with("pingpong:")).expect("the program reports");
    let words: Vec<&str> = line.split_whitespace().collect();
    let switches: f64 = words[1].parse().expect("a switch count");
    let nanoseconds: f64 = words[4].parse().expect("a duration");
    nanoseconds / switches
}

fn os_threads(rounds: u32) -> f64 {
    let turn = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let main_thread = thread::current();
    let other = {
        let turn = turn.clone();
        thread::spawn(move || {
            for _ in 0..rounds {
                while turn.load(Ordering::Acquire) != 1 {
                    thread::park();
                }
                turn.store(0, Ordering::Release);
                main_thread.unpark();
            }
        })
    };
    for _ in 0..rounds {
        turn.store(1, Ordering::Release);
        other.thread().unpark();
        while turn.load(Ordering::Acquire) != 0 {
            thread::park();
        }
    }
    other.join().unwrap();
    start.elapsed().as_nanos() as f64 / (2.0 * f64::from(rounds))
}
