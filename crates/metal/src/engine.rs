//! The wasmtime engine of the bare-metal kernel: the shared settings of `nebulet-metal-image`
//! plus what only the machine can say — where code may execute and which CPU features exist —
//! and the epoch, advanced by the timer interrupt.

use alloc::sync::Arc;
use core::arch::x86_64::__cpuid;

use wasmtime::{CustomCodeMemory, Engine};

/// The kernel's engine, once made: the timer interrupt advances its epoch.
static ENGINE: spin::Once<Engine> = spin::Once::new();

/// Code memory on this machine: everything is identity-mapped, writable and executable (the
/// boot page tables set no NX bit and EFER.NXE is off), so publishing code changes nothing; x86
/// keeps instruction fetches coherent with the stores that wrote the code.
#[derive(Debug)]
struct IdentityMappedCode;

impl CustomCodeMemory for IdentityMappedCode {
    fn required_alignment(&self) -> usize {
        4096
    }

    fn publish_executable(&self, _pointer: *const u8, _length: usize) -> wasmtime::Result<()> {
        Ok(())
    }

    fn unpublish_executable(&self, _pointer: *const u8, _length: usize) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// Whether this CPU has an x86 feature wasmtime asks about (names as in Rust's
/// `is_x86_feature_detected!`), from cpuid leaf 1. Features whose instructions need state the
/// kernel has not enabled (AVX and everything VEX- or EVEX-encoded: XSAVE and XCR0 are never set
/// up) are reported absent whatever cpuid says; unknown names are `None`.
fn detect_host_feature(feature: &str) -> Option<bool> {
    let ecx = __cpuid(1).ecx;
    let bit = |bit: u32| Some(ecx & (1 << bit) != 0);
    match feature {
        "sse3" => bit(0),
        "ssse3" => bit(9),
        "cmpxchg16b" => bit(13),
        "sse4.1" => bit(19),
        "sse4.2" => bit(20),
        "popcnt" => bit(23),
        "avx" | "avx2" | "fma" | "avxvnni" | "bmi1" | "bmi2" | "lzcnt" | "avx512bitalg"
        | "avx512dq" | "avx512f" | "avx512vl" | "avx512vbmi" | "avx512vnni" => Some(false),
        _ => None,
    }
}

/// Makes the engine (once) and hooks its epoch to the timer tick.
pub fn init() -> wasmtime::Result<&'static Engine> {
    let mut config = nebulet_metal_image::engine_config();
    config.with_custom_code_memory(Some(Arc::new(IdentityMappedCode)));
    // SAFETY: `detect_host_feature` reports a feature only when cpuid says the CPU has it and
    // the kernel has enabled what its instructions need: SSE (boot.rs sets CR4.OSFXSR and
    // CR4.OSXMMEXCPT and clears CR0.EM), and nothing beyond (AVX and later are always reported
    // absent). Wasmtime then refuses any module compiled for a feature this machine lacks.
    unsafe {
        config.detect_host_feature(detect_host_feature);
    }
    let engine = Engine::new(&config)?;
    let engine = ENGINE.call_once(|| engine);
    crate::interrupts::set_tick_hook(advance_epoch);
    Ok(engine)
}

/// The tick hook: runs in the timer interrupt. `Engine::increment_epoch` is one relaxed atomic
/// add on the engine's shared state (wasmtime 48, `src/engine.rs`), and `Once::get` one atomic
/// load: no lock, no allocation.
fn advance_epoch() {
    if let Some(engine) = ENGINE.get() {
        engine.increment_epoch();
    }
}
