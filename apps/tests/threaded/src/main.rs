//! Threads test program, run by the hosted integration tests as `threaded CASE`.
//! Each case exits 0 when its checks hold, or panics (a trap) saying which failed.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use sip::{Error, clock};

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    match case.as_str() {
        "std" => std_sync(),
        "spin" => spin(),
        "sched_lock" => sched_lock(),
        "futex" => futex(),
        "trap" => trap_in_a_thread(),
        "exit" => exit_from_a_thread(),
        "cancel" => cancel(),
        "hold" => hold(),
        "pingpong" => {
            ping_pong(std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(10_000))
        }
        other => panic!("unknown case `{other}`"),
    }
    println!("threaded {case}: ok");
}

/// Mutex, Condvar, channels and join, as an unmodified std program uses them.
fn std_sync() {
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let counter = counter.clone();
            thread::spawn(move || {
                for _ in 0..1_000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 8_000);

    let (sender, receiver) = mpsc::channel();
    for index in 0..4u64 {
        let sender = sender.clone();
        thread::spawn(move || sender.send(index * index).unwrap());
    }
    drop(sender);
    assert_eq!(receiver.iter().sum::<u64>(), 14);

    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let waiter = {
        let pair = pair.clone();
        thread::spawn(move || {
            let (lock, ready) = &*pair;
            let guard = ready.wait_while(lock.lock().unwrap(), |ready| !*ready).unwrap();
            assert!(*guard);
            42
        })
    };
    thread::sleep(Duration::from_millis(5));
    *pair.0.lock().unwrap() = true;
    pair.1.notify_one();
    assert_eq!(waiter.join().unwrap(), 42);
}

/// A thread that spins without calls does not keep the others from running.
fn spin() {
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        thread::spawn(move || while !stop.load(Ordering::Relaxed) {})
    };
    let progress = Arc::new(AtomicU64::new(0));
    let counter = {
        let progress = progress.clone();
        thread::spawn(move || {
            for step in 1..=100 {
                progress.store(step, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(100));
            }
        })
    };
    counter.join().unwrap();
    assert_eq!(progress.load(Ordering::Relaxed), 100);
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
}

/// Inside a sched_lock region no other thread of the process runs, even across epoch ticks.
fn sched_lock() {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (counter, stop) = (counter.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the busy thread start counting.
    while counter.load(Ordering::Relaxed) == 0 {
        sip::thread::yield_now();
    }
    let (before, after) = sip::thread::no_preempt(|| {
        let before = counter.load(Ordering::Relaxed);
        // 20 ms of running without blocking: many epoch ticks.
        let until = clock::monotonic() + 20_000_000;
        while clock::monotonic() < until {}
        (before, counter.load(Ordering::Relaxed))
    });
    assert_eq!(before, after, "the busy thread ran inside the region");
    let unlocked = counter.load(Ordering::Relaxed);
    thread::sleep(Duration::from_millis(5));
    assert!(counter.load(Ordering::Relaxed) > unlocked, "the busy thread runs again after unlock");
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    // Unlock without lock is refused.
    let guard = sip::thread::NoPreempt::new().unwrap();
    drop(guard);
}

/// Starts two threads that wait forever, and joins them: runs until it is killed.
fn hold() {
    let word = Arc::new(AtomicU32::new(0));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let word = word.clone();
            thread::spawn(move || {
                loop {
                    let _ = sip::thread::futex_wait(&word, 0, i64::MAX);
                }
            })
        })
        .collect();
    for waiter in waiters {
        waiter.join().unwrap();
    }
}

/// futex_wait / futex_wake: value check, timeout, wake counts.
fn futex() {
    let word = Arc::new(AtomicU32::new(7));
    assert_eq!(sip::thread::futex_wait(&word, 8, i64::MAX), Err(Error::BadState));
    let start = clock::monotonic();
    assert_eq!(sip::thread::futex_wait(&word, 7, start + 5_000_000), Err(Error::TimedOut));
    assert!(clock::monotonic() - start >= 5_000_000);
    assert_eq!(sip::thread::futex_wake(&word, 10), Ok(0));
    let waiter = {
        let word = word.clone();
        thread::spawn(move || {
            while word.load(Ordering::Acquire) == 7 {
                let _ = sip::thread::futex_wait(&word, 7, i64::MAX);
            }
        })
    };
    // Wake with the value unchanged until a wake finds the waiter queued (it then waits again):
    // changing the value first would let a waiter that starts late never wait at all.
    let mut woken = 0;
    for _ in 0..50_000 {
        thread::sleep(Duration::from_micros(200));
        woken = sip::thread::futex_wake(&word, 1).unwrap();
        if woken == 1 {
            break;
        }
    }
    assert_eq!(woken, 1, "the waiter never waited");
    word.store(8, Ordering::Release);
    sip::thread::futex_wake(&word, u32::MAX).unwrap();
    waiter.join().unwrap();
}

/// Two threads hand a turn back and forth through a futex: each hand-off is one switch.
/// Prints the time per switch, for the switch benchmark (`cargo xtask bench`).
fn ping_pong(rounds: u32) {
    let turn = Arc::new(AtomicU32::new(0));
    let player = |me: u32, turn: Arc<AtomicU32>| {
        move || {
            for _ in 0..rounds {
                while turn.load(Ordering::Acquire) != me {
                    let _ = sip::thread::futex_wait(&turn, 1 - me, i64::MAX);
                }
                turn.store(1 - me, Ordering::Release);
                sip::thread::futex_wake(&turn, 1).unwrap();
            }
        }
    };
    let start = clock::monotonic();
    let other = thread::spawn(player(1, turn.clone()));
    player(0, turn)();
    other.join().unwrap();
    let elapsed = clock::monotonic() - start;
    let switches = 2 * u64::from(rounds);
    println!(
        "pingpong: {switches} switches in {elapsed} ns, {:.1} ns per switch",
        elapsed as f64 / switches as f64
    );
}

/// Closing a handle that another thread waits on cancels that wait.
fn cancel() {
    let event = sip::Event::create().unwrap();
    let raw = event.as_handle().as_raw();
    let waiting = Arc::new(AtomicBool::new(false));
    let waiter = {
        let waiting = waiting.clone();
        thread::spawn(move || {
            // Borrow the value without owning it: the main thread closes it.
            let handle = std::mem::ManuallyDrop::new(sip::Handle::from_raw(raw).unwrap());
            // Inside the sched lock no other thread of this process runs until this one blocks:
            // once the main thread sees `waiting`, this thread is inside the wait (no timing).
            let region = sip::thread::NoPreempt::new().unwrap();
            waiting.store(true, Ordering::Release);
            let result = handle.wait_one(sip::Signals::SIGNALED, sip::DEADLINE_INFINITE);
            drop(region);
            result
        })
    };
    while !waiting.load(Ordering::Acquire) {
        sip::thread::yield_now();
    }
    drop(event);
    assert_eq!(waiter.join().unwrap(), Err(Error::Canceled));
}

/// A trap in a thread other than the main one ends the whole process.
fn trap_in_a_thread() {
    let pair = Arc::new((Mutex::new(()), Condvar::new()));
    let _crasher = thread::spawn(|| {
        thread::sleep(Duration::from_millis(2));
        panic!("a thread fails");
    });
    // Blocks forever: the process must end through the other thread's trap.
    let (lock, never) = &*pair;
    let guard = lock.lock().unwrap();
    let _unreachable = never.wait(guard);
    unreachable!("the main thread was woken");
}

/// `process_exit` in a thread ends the process with its code.
fn exit_from_a_thread() {
    thread::spawn(|| sip::process::exit(9));
    loop {
        thread::sleep(Duration::from_millis(1));
    }
}
