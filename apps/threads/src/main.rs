//! Threads demo: unmodified std threads on Nebulet's coroutine threads.
//!
//! Four workers add up slices of 1..=N under a `Mutex`, signal a `Condvar` when done, and the
//! main thread waits for all of them; meanwhile another thread spins on an atomic flag without
//! making a single call, and still nobody starves: the epoch switches threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

const N: u64 = 1_000_000;
const WORKERS: u64 = 4;

fn main() {
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let spinner = {
        let (stop, spins) = (stop.clone(), spins.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                spins.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let state = Arc::new((Mutex::new((0u64, 0u64)), Condvar::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let state = state.clone();
            thread::spawn(move || {
                let chunk = N / WORKERS;
                let partial: u64 = (index * chunk + 1..=(index + 1) * chunk).sum();
                let (lock, done) = &*state;
                let mut totals = lock.lock().unwrap();
                totals.0 += partial;
                totals.1 += 1;
                done.notify_all();
            })
        })
        .collect();

    let (lock, done) = &*state;
    let totals = done.wait_while(lock.lock().unwrap(), |totals| totals.1 < WORKERS).unwrap();
    let sum = totals.0;
    drop(totals);
    for worker in workers {
        worker.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();

    assert_eq!(sum, N * (N + 1) / 2);
    println!("threads: {WORKERS} threads summed 1..={N} = {sum}");
    println!(
        "threads: a spinning thread looped {} times meanwhile, and starved nobody",
        spins.load(Ordering::Relaxed)
    );
}
