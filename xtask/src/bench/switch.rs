//! Thread switch: two threads hand a turn back and forth through a futex. Nebulet: two green
//! threads of one process
//! (`threaded pingpong`, `futex_wait`/`futex_wake`); Linux: two OS threads with
//! `thread::park`/`unpark` (futex calls). Each hand-off is one switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Instant;

use super::nebulet::Nebulet;
use super::{Comparison, Goal, Settings, Side};

pub fn thread_switch(nebulet: &Nebulet, settings: &Settings) -> Result<Comparison, String> {
    let rounds = settings.switch_round_trips;
    let nebulet = Side::measure(
        "Nebulet: green threads of one process, futex ping-pong",
        settings.runs,
        || green_threads(nebulet, rounds),
    )?;
    let linux = Side::measure(
        "Linux: two threads, park/unpark ping-pong (the faster of pinned to one core and not)",
        settings.runs,
        || super::faster_pinned_or_not(|| Ok(os_threads(rounds))),
    )?;
    Ok(Comparison { operation: "thread switch", nebulet, linux, goal: Some(Goal::AtMost(200.0)) })
}

/// `(switches, nanoseconds)` from the line `pingpong: S switches in T ns, X ns per switch`.
fn green_threads(nebulet: &Nebulet, rounds: u64) -> Result<(u64, f64), String> {
    let output = nebulet.run("threaded", &["pingpong".into(), rounds.to_string()])?;
    let line = output
        .lines()
        .find(|line| line.starts_with("pingpong:"))
        .ok_or(format!("threaded pingpong printed no result: {output}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let number =
        |index: usize| words.get(index).and_then(|word| word.trim_end_matches(',').parse().ok());
    match (number(1), number(4)) {
        (Some(switches), Some(nanoseconds)) => Ok((switches as u64, nanoseconds)),
        _ => Err(format!("unexpected line `{line}`")),
    }
}

fn os_threads(rounds: u64) -> (u64, f64) {
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
    other.join().expect("the other thread does not panic");
    (2 * rounds, start.elapsed().as_nanos() as f64)
}
