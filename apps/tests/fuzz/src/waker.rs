//! The waker: a second thread whose one job is to wake the main thread from a `futex_wait`, so
//! that call can return `OK` (only another thread of the process can wake a waiter).

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use nebulet_abi::DEADLINE_INFINITE;
use nebulet_raw as raw;

/// The address the main thread waits on and wants woken; 0 when there is none.
static REQUEST: AtomicU32 = AtomicU32::new(0);
/// Set (to 1) when the waker is to end.
static STOP: AtomicU32 = AtomicU32::new(0);
/// Set (to 1) once the waker has started and waits for requests.
static READY: AtomicU32 = AtomicU32::new(0);
/// How many times the waker tries to wake a request before it gives up on it.
const TRIES: u32 = 10_000;

fn address(word: &AtomicU32) -> u32 {
    word.as_ptr() as usize as u32
}

/// Starts the waker, and returns once it is waiting: it allocates nothing after that.
pub fn start() -> JoinHandle<()> {
    let thread = std::thread::spawn(run);
    while READY.load(Ordering::Acquire) == 0 {
        let _ = raw::thread_yield();
    }
    thread
}

fn run() {
    READY.store(1, Ordering::Release);
    loop {
        if STOP.load(Ordering::Acquire) != 0 {
            return;
        }
        let target = REQUEST.load(Ordering::Acquire);
        if target == 0 {
            // Woken by `request`, by `stop`, or by a fuzzed futex_wake on this address.
            let _ = raw::futex_wait(address(&REQUEST), 0, DEADLINE_INFINITE);
            continue;
        }
        for _ in 0..TRIES {
            let mut woken = 0u32;
            let _ = raw::futex_wake(target, 1, raw::writable(&mut woken));
            if woken > 0 || REQUEST.load(Ordering::Acquire) != target {
                break;
            }
            let _ = raw::thread_yield();
        }
        let _ = REQUEST.compare_exchange(target, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Asks the waker to wake the next waiter on `target` (an address in the scratch page).
pub fn request(target: u32) {
    REQUEST.store(target, Ordering::Release);
    let _ = raw::futex_wake(address(&REQUEST), 1, 0);
}

/// Withdraws a request the waker has not served.
pub fn withdraw() {
    REQUEST.store(0, Ordering::Release);
}

/// Ends the waker and waits for it.
pub fn stop(thread: JoinHandle<()>) {
    STOP.store(1, Ordering::Release);
    let _ = raw::futex_wake(address(&REQUEST), 1, 0);
    thread.join().expect("the waker thread panicked");
}
