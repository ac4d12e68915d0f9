//! Nebulet on bare metal (x86_64, QEMU PVH boot): the boot skeleton the kernel core and
//! wasmtime are wired onto. `cargo xtask qemu` builds and boots it; it runs a demo and exits.

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod clock;
mod entropy;
mod executor;
mod heap;
mod interrupts;
mod platform;
mod serial;

use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{now_ns, rdtsc};
use crate::platform::{EXIT_FAILURE, EXIT_SUCCESS, exit};

/// Called by the boot trampoline on the 8 MiB kernel stack, interrupts off.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: *const boot::StartInfo) -> ! {
    let entered = rdtsc();
    serial::init();
    let calibration = rdtsc();
    clock::init();
    println!(
        "nebulet-metal: booted in {} ms (first instruction to kernel_main; TSC {} MHz, \
         calibrated in {} ms)",
        ms(clock::tsc_to_ns(entered)),
        clock::tsc_hz() / 1_000_000,
        ms(now_ns() - clock::tsc_to_ns(calibration))
    );
    let info = boot::StartInfo::from_pointer(start_info).expect("a PVH start info");
    let heap = heap::init(info);
    println!(
        "heap: {} MiB at {:#x}; ACPI RSDP at {:#x}",
        heap.len() >> 20,
        heap.start,
        info.rsdp()
    );
    if let Some(command_line) = info.command_line().filter(|line| !line.is_empty()) {
        println!("command line: {command_line}");
    }
    interrupts::init();
    interrupts::set_tick_hook(count_hook_call);
    fault_on_request(info.command_line().unwrap_or_default());
    let source = entropy::init();
    let mut sample = [0u8; 8];
    entropy::fill_secure_random(&mut sample);
    println!("entropy: {source:?} (sample {:#018x})", u64::from_le_bytes(sample));
    println!("initialised in {} ms", ms(now_ns()));

    let result = executor::run_until(demo());
    println!(
        "demo: {} ms, {} ticks, {} tick hook calls, {} halts",
        ms(now_ns()),
        interrupts::ticks(),
        HOOK_CALLS.load(Ordering::Relaxed),
        executor::halts()
    );
    match result {
        Ok(()) => {
            println!("nebulet-metal: all checks passed");
            exit(EXIT_SUCCESS)
        }
        Err(failure) => {
            println!("nebulet-metal: FAILED: {failure}");
            exit(EXIT_FAILURE)
        }
    }
}

/// Stands in for wasmtime's `Engine::increment_epoch`.
static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);

fn count_hook_call() {
    HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds with three decimals, for printing.
fn ms(ns: u64) -> impl core::fmt::Display {
    struct Ms(u64);
    impl core::fmt::Display for Ms {
        fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(formatter, "{}.{:03}", self.0 / 1_000_000, self.0 / 1000 % 1000)
        }
    }
    Ms(ns)
}

/// Two tasks sleep 10 ms three times each, concurrently; meanwhile the timer must tick.
async fn demo() -> Result<(), &'static str> {
    let start = now_ns();
    let ticks = interrupts::ticks();
    let sleepers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            executor::spawn(async move {
                for round in 1..=3 {
                    let before = now_ns();
                    executor::sleep_ns(10_000_000).await;
                    let slept = now_ns() - before;
                    println!("task {name}: slept {} ms ({round}/3)", ms(slept));
                    if slept < 10_000_000 {
                        return Err("a sleep ended early");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for sleeper in sleepers {
        sleeper.await?;
    }
    let elapsed = now_ns() - start;
    println!("sleepers done after {} ms", ms(elapsed));
    if elapsed >= 60_000_000 {
        return Err("the sleepers did not run concurrently (60 ms or more)");
    }
    // Spin (no executor) until the timer interrupt has advanced the tick count by 5.
    let spin_start = now_ns();
    let seen = interrupts::ticks();
    while interrupts::ticks() < seen + 5 {
        if now_ns() - spin_start > 1_000_000_000 {
            return Err("the timer did not tick for a second");
        }
        core::hint::spin_loop();
    }
    if HOOK_CALLS.load(Ordering::Relaxed) < 5 {
        return Err("the tick hook did not run");
    }
    let ticked = interrupts::ticks() - ticks;
    println!(
        "ticks: {ticked} during the demo; 5 more took {} ms of spinning",
        ms(now_ns() - spin_start)
    );
    Ok(())
}

/// `-append fault=de|ud|gp|pf|overflow` raises that exception, to try the handlers (`hang`:
/// never exits, to try `cargo xtask qemu --timeout`).
fn fault_on_request(command_line: &str) {
    let Some(fault) = command_line.split(' ').find_map(|word| word.strip_prefix("fault=")) else {
        return;
    };
    println!("raising {fault}");
    match fault {
        // SAFETY: divides by zero on purpose (#DE); the handler reports it and exits QEMU.
        "de" => unsafe { core::arch::asm!("xor edx, edx", "div edx", out("eax") _, out("edx") _) },
        // SAFETY: an invalid opcode on purpose (#UD); the handler exits QEMU.
        "ud" => unsafe { core::arch::asm!("ud2") },
        // SAFETY: reads a non-canonical address on purpose (#GP); the handler exits QEMU.
        "gp" => drop(unsafe { core::ptr::read_volatile(0x8000_0000_0000 as *const u8) }),
        // SAFETY: reads unmapped memory (above 4 GiB) on purpose (#PF); the handler exits QEMU.
        "pf" => drop(unsafe { core::ptr::read_volatile(0x1_0000_0000 as *const u8) }),
        "overflow" => println!("{}", recurse(0)), // reaches the guard: #PF, then #DF on its IST
        "hang" => loop {
            x86_64::instructions::hlt();
        },
        _ => println!("unknown fault {fault}"),
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[depth as usize % 64]
}

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    let _ = writeln!(serial::Serial, "\nnebulet-metal: panic: {panic}");
    exit(EXIT_FAILURE)
}
