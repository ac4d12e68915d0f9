//! A slow task for the demo: it sleeps 300 ms, long enough for the `hang` service to hang, be
//! killed by its watchdog and be restarted by init, then reports how long it was up.

use std::time::Duration;

fn main() {
    let start = sip::clock::monotonic();
    sip::sleep(Duration::from_millis(300)).expect("sleeping works");
    let elapsed = (sip::clock::monotonic() - start) / 1_000_000;
    println!("uptime: up {elapsed} ms, done");
}
