//! Nebulet on bare metal (x86_64, QEMU PVH boot): the kernel core and wasmtime on the machine's
//! own drivers. It boots the system image QEMU passes as its `-initrd` (apps precompiled by the
//! host, see `nebulet-metal-image`), runs `init` until it exits, and leaves QEMU with success
//! iff init exited with code 0. `cargo xtask qemu` builds the image and the kernel and boots them.

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod clock;
mod cpus;
mod engine;
mod entropy;
mod executor;
mod heap;
mod interrupts;
mod network;
mod platform;
mod rtc;
mod serial;
mod serve;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use nebulet_abi::ExitReason;
use nebulet_kernel::{ExitStatus, Kernel};

use crate::clock::{now_ns, rdtsc};
use crate::platform::{EXIT_FAILURE, EXIT_SUCCESS, MetalPlatform, exit};

/// Called by the boot trampoline on the 512 KiB boot stack, interrupts off.
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
    let (kernel_start, kernel_end) = boot::kernel_range();
    println!(
        "memory: {} KiB of RAM; kernel {} KiB at {kernel_start:#x} (with its stack); heap {} KiB \
         in {} spans from {:#x}; ACPI RSDP at {:#x}",
        heap.ram >> 10,
        (kernel_end - kernel_start) >> 10,
        heap.bytes >> 10,
        heap.span_count,
        heap.spans[0].0,
        info.rsdp()
    );
    if let Some(command_line) = info.command_line().filter(|line| !line.is_empty()) {
        println!("command line: {command_line}");
    }
    interrupts::init();
    fault_on_request(info.command_line().unwrap_or_default());
    let wanted = info
        .command_line()
        .unwrap_or_default()
        .split(' ')
        .find_map(|word| word.strip_prefix("cpus=")?.parse().ok())
        .unwrap_or(0);
    let reserved: Vec<(u64, u64)> = heap::loader_ranges(info).collect();
    let starting = now_ns();
    let online = cpus::start_application_processors(info.rsdp(), wanted, &reserved);
    println!(
        "cpus: {online} online (started in {} ms); timer: {} ticks so far, {} counts each",
        ms(now_ns() - starting),
        interrupts::ticks(),
        cpus::timer_count()
    );
    let source = entropy::init();
    let wall_clock = rtc::init();
    println!(
        "entropy: {source:?}; wall clock: {}",
        wall_clock
            .map_or_else(|| "unknown".to_string(), |seconds| format!("{seconds} s since 1970"))
    );
    println!("initialised in {} ms", ms(now_ns()));

    if let Some(app) = word_value(info.command_line().unwrap_or_default(), "serve") {
        let failure = serve_system(info, app);
        println!("nebulet-metal: FAILED: {failure}");
        exit(EXIT_FAILURE)
    }
    let command_line = info.command_line().unwrap_or_default();
    let (first, result) = match word_value(command_line, "run") {
        Some(app) => (app, run_system(info, app, command_line)),
        None => ("init", boot_system(info)),
    };
    let status = match result {
        Ok(status) => status,
        Err(failure) => {
            println!("nebulet-metal: FAILED: {failure}");
            exit(EXIT_FAILURE)
        }
    };
    if let Some(first_line) = platform::first_console_write_ns() {
        println!("nebulet-metal: {first}'s first line {} ms after kernel entry", ms(first_line));
    }
    println!(
        "nebulet-metal: {} ms since kernel entry, {} timer ticks, {} idle halts",
        ms(now_ns()),
        interrupts::ticks(),
        executor::halts()
    );
    let (used, peak) = heap::used_bytes();
    println!(
        "nebulet-metal: heap {} KiB in use, at most {} KiB, of {} KiB",
        used >> 10,
        peak >> 10,
        (heap::free_bytes() + used) >> 10
    );
    match (status.reason, &status.message) {
        (ExitReason::Exited, _) => {
            println!("nebulet-metal: {first} exited with code {}", status.code)
        }
        (reason, Some(message)) => {
            println!("nebulet-metal: {first} ended: {} ({message})", reason.word())
        }
        (reason, None) => println!("nebulet-metal: {first} ended: {}", reason.word()),
    }
    exit(if status.reason == ExitReason::Exited && status.code == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    })
}

/// The system image of the first PVH module (`-initrd`), its apps loaded on the kernel's
/// engine.
struct Loaded {
    engine: &'static wasmtime::Engine,
    manifest: &'static str,
    apps: Vec<(String, wasmtime::Module)>,
}

/// Loads the system image: parses it and deserializes every app.
fn load_image(info: &boot::StartInfo) -> Result<Loaded, String> {
    let module = info.modules().first().ok_or(
        "no system image: boot with the image as the initrd (`cargo xtask qemu` does: \
         `-initrd target/metal/image.bin`)",
    )?;
    // SAFETY: the loader put the module in RAM below 4 GiB, which boot.rs identity-maps;
    // `heap::init` checked that it does not overlap the heap, it lies outside the kernel image
    // (the loader placed both), and nothing ever writes it: a shared borrow for the whole run.
    let bytes =
        unsafe { core::slice::from_raw_parts(module.paddr as *const u8, module.size as usize) };
    let image = nebulet_metal_image::parse(bytes)
        .map_err(|error| format!("the system image at {:#x}: {error}", module.paddr))?;
    let engine = engine::init().map_err(|error| format!("cannot make the engine: {error:#}"))?;
    let loading = now_ns();
    let mut apps = Vec::with_capacity(image.apps.len());
    let mut copied = 0;
    for app in &image.apps {
        // SAFETY: `Module::deserialize` trusts its bytes to be wasmtime's own output for this
        // engine's settings (it checks the header, the settings and the CPU features, not the
        // machine code). These come from the image this kernel was booted with, written by the
        // host's precompiler (`nebulet_metal_image::precompile`, same `engine_config`): they are
        // as trusted as the kernel image itself. A tampered image is NOT defended against: its
        // code runs with the kernel's privileges. In place (`deserialize_raw`), the module also
        // needs its bytes to live as long as it and never change: they are in the image, which
        // lives for the whole run, outside the heap (`heap::init`), and nothing writes it.
        let module = unsafe {
            if app.code.as_ptr().addr() % nebulet_metal_image::CODE_ALIGNMENT == 0 {
                wasmtime::Module::deserialize_raw(engine, core::ptr::NonNull::from(app.code))
            } else {
                copied += app.code.len();
                wasmtime::Module::deserialize(engine, app.code)
            }
        }
        .map_err(|error| format!("cannot load app {}: {error:#}", app.name))?;
        apps.push((app.name.to_string(), module));
    }
    println!(
        "image: {} apps, {} KiB, loaded in {} ms ({} KiB of code copied to the heap; heap in \
         use with the engine and the modules: {} KiB)",
        apps.len(),
        bytes.len() >> 10,
        ms(now_ns() - loading),
        copied >> 10,
        heap::used_bytes().0 >> 10
    );
    Ok(Loaded { engine, manifest: image.manifest, apps })
}

/// Loads the system image, boots it on a new kernel and runs every task until `init` ends;
/// returns how init ended.
fn boot_system(info: &boot::StartInfo) -> Result<ExitStatus, String> {
    let Loaded { engine, manifest, apps } = load_image(info)?;
    let init = apps.iter().find(|(name, _)| name == "init").map(|(_, module)| module.clone());
    let starting = now_ns();
    let init = init.ok_or("the system image has no init app")?;
    let kernel = Kernel::new(Arc::new(MetalPlatform), engine.clone())
        .map_err(|error| format!("cannot start the kernel: {error:#}"))?;
    let process = kernel
        .boot(init, manifest, apps)
        .map_err(|error| format!("cannot boot the image: {error}"))?;
    println!(
        "kernel: up, init started in {} ms ({} ms after kernel entry)",
        ms(now_ns() - starting),
        ms(now_ns())
    );
    Ok(executor::run_until(process.wait()))
}

/// A kernel on the image's engine, and the image's app `name` (for a system of one app).
fn kernel_with_app(
    info: &boot::StartInfo,
    name: &str,
) -> Result<(Arc<Kernel>, wasmtime::Module), String> {
    let Loaded { engine, apps, .. } = load_image(info)?;
    let module = apps
        .into_iter()
        .find_map(|(app, module)| (app == name).then_some(module))
        .ok_or_else(|| format!("the image has no app {name}"))?;
    let kernel = Kernel::new(Arc::new(MetalPlatform), engine.clone())
        .map_err(|error| format!("cannot start the kernel: {error:#}"))?;
    Ok((kernel, module))
}

/// Serves HTTP on port 80 of the machine's network (QEMU: a virtio-net device) with the image's
/// app `name`, a fresh process per request (`serve.rs`), until the machine is stopped; returns
/// only why it could not start.
fn serve_system(info: &boot::StartInfo, name: &str) -> String {
    let result = (|| -> Result<(), String> {
        let (kernel, module) = kernel_with_app(info, name)?;
        let network = network::Network::start().map_err(|error| format!("network: {error}"))?;
        println!("serve: answering http://10.0.2.15:80/ with {name}, a process per request");
        executor::run_until(serve::serve(kernel, network, name.to_string(), module, 80));
        Ok(())
    })();
    result.err().unwrap_or_else(|| "the server stopped".to_string())
}

/// Runs the image's app `name` alone, as `nebulet run` does: its arguments are the command
/// line's `arg=VALUE` words, and each `listen=PORT` word gives it a kernel listener fed by that
/// TCP port of the machine's network, as WASI descriptor 3, 4, and so on. Returns how it ended.
fn run_system(
    info: &boot::StartInfo,
    name: &str,
    command_line: &str,
) -> Result<ExitStatus, String> {
    let (kernel, module) = kernel_with_app(info, name)?;
    let words = |key: &'static str| {
        command_line.split(' ').filter_map(move |word| word.strip_prefix(key)?.strip_prefix('='))
    };
    let ports: Vec<u16> = words("listen")
        .map(|port| port.parse().map_err(|_| format!("listen={port}: not a port")))
        .collect::<Result<_, _>>()?;
    let mut listeners = Vec::with_capacity(ports.len());
    if !ports.is_empty() {
        let network = network::Network::start().map_err(|error| format!("network: {error}"))?;
        for (index, &port) in ports.iter().enumerate() {
            println!("run: listening on port {port} (descriptor {})", 3 + index);
            listeners.push(network::listener(network.clone(), port));
        }
    }
    let options = nebulet_kernel::ProcessOptions {
        name: name.to_string(),
        args: words("arg").map(str::to_string).collect(),
        listeners,
        ..nebulet_kernel::ProcessOptions::default()
    };
    let process = kernel.spawn(module, options);
    Ok(executor::run_until(process.wait()))
}

/// The value of `KEY=VALUE` on the kernel command line.
fn word_value<'a>(command_line: &'a str, key: &str) -> Option<&'a str> {
    command_line.split(' ').find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
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
