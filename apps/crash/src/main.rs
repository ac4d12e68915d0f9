//! `crash`: prints a line, then traps (the wasm `unreachable` instruction), for isolation
//! tests: the kernel and every other process must keep running, and the process ends with
//! reason "trapped".

fn main() {
    println!("crash: about to trap");
    trap()
}

#[cfg(target_family = "wasm")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_family = "wasm"))]
fn trap() -> ! {
    std::process::abort()
}
