//! `hang`: a service that hangs, for the watchdog and init's restarts.
//!
//! It writes READY to its bootstrap channel (it registers no name), arms its watchdog with a
//! 50 ms interval and does three steps of pretend work (20 ms sleeps), proving it is alive
//! after each. Then it hangs: it spins forever without a single call. The kernel kills it with
//! reason "watchdog" about 50 ms later, whatever it is doing, and `init` restarts it if its
//! manifest line says so (`restart=always restarts=2/10s` in the demo).

use std::hint::black_box;
use std::time::Duration;

use sip::abi::bootstrap::READY;
use sip::{clock, watchdog};

/// The watchdog interval.
const INTERVAL: Duration = Duration::from_millis(50);

/// The steps of work done before hanging, and how long each takes.
const STEPS: u32 = 3;
const STEP: Duration = Duration::from_millis(20);

fn main() {
    let Some(bootstrap) = sip::process::bootstrap_channel() else {
        fail(sip::process::NO_BOOTSTRAP);
    };
    if let Err(error) = bootstrap.write_bytes(READY) {
        fail(&format!("cannot report ready: {error}"));
    }
    println!("hang: started");
    if let Err(error) = watchdog::setup(INTERVAL) {
        fail(&format!("cannot arm the watchdog: {error}"));
    }
    for _ in 0..STEPS {
        println!("hang: working");
        if let Err(error) = clock::sleep(STEP) {
            fail(&format!("cannot sleep: {error}"));
        }
        if let Err(error) = watchdog::alive() {
            fail(&format!("watchdog_alive: {error}"));
        }
    }
    println!("hang: hanging");
    // No calls from here on: only the watchdog can end this.
    let mut spins = 0u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
        core::hint::spin_loop();
    }
}

fn fail(message: &str) -> ! {
    println!("hang: {message}");
    sip::process::exit(1)
}
