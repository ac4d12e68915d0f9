//! Secure random bytes: RDSEED if the CPU has it, else RDRAND, else a ChaCha20 generator seeded
//! from TSC jitter.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::clock::rdtsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rdseed,
    Rdrand,
    /// ChaCha20 seeded from TSC jitter: see `fill_secure_random`.
    TscJitterChaCha20,
}

static SOURCE: spin::Once<Source> = spin::Once::new();
static HAS_RDRAND: AtomicBool = AtomicBool::new(false);
static FALLBACK: spin::Mutex<Option<ChaCha20Rng>> = spin::Mutex::new(None);

/// Picks the source from `cpuid` (RDSEED: leaf 7 EBX bit 18; RDRAND: leaf 1 ECX bit 30).
pub fn init() -> Source {
    *SOURCE.call_once(|| {
        // Leaf 7 exists when the maximum leaf (leaf 0 EAX) is at least 7.
        let max_leaf = core::arch::x86_64::__cpuid(0).eax;
        let rdseed = max_leaf >= 7 && core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 18) != 0;
        let rdrand = core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0;
        HAS_RDRAND.store(rdrand, Ordering::Relaxed);
        if rdseed {
            Source::Rdseed
        } else if rdrand {
            Source::Rdrand
        } else {
            *FALLBACK.lock() = Some(ChaCha20Rng::from_seed(tsc_jitter_seed()));
            Source::TscJitterChaCha20
        }
    })
}

fn rdseed() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: only called when cpuid reports RDSEED; writes two registers.
    unsafe {
        asm!("rdseed {0}", "setc {1}", out(reg) value, out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(value)
}

fn rdrand() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: only called when cpuid reports RDRAND; writes two registers.
    unsafe {
        asm!("rdrand {0}", "setc {1}", out(reg) value, out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(value)
}

/// RDSEED may run dry for a while under load: retry with pauses, then use RDRAND if present.
/// RDRAND failing 10 times in a row means broken hardware (Intel's guidance): panic rather than
/// return weak bytes.
fn hardware_word(source: Source) -> u64 {
    if source == Source::Rdseed {
        let tries = if HAS_RDRAND.load(Ordering::Relaxed) { 1_000 } else { 1_000_000 };
        for _ in 0..tries {
            if let Some(word) = rdseed() {
                return word;
            }
            core::hint::spin_loop();
        }
        assert!(HAS_RDRAND.load(Ordering::Relaxed), "RDSEED failed {tries} times in a row");
    }
    (0..10).find_map(|_| rdrand()).expect("RDRAND failed 10 times in a row")
}

/// Fills `buffer` with random bytes from the source `init` chose.
///
/// With RDSEED or RDRAND the bytes come from the CPU's hardware generator. On a CPU with
/// neither, they come from ChaCha20 seeded at boot from TSC jitter (timing noise of port I/O):
/// that fallback is NOT cryptographically strong — under a VM or on simple hardware the jitter
/// may carry little entropy and an attacker may predict the seed.
pub fn fill_secure_random(buffer: &mut [u8]) {
    let source = init();
    if source == Source::TscJitterChaCha20 {
        FALLBACK.lock().as_mut().expect("seeded by init").fill_bytes(buffer);
        return;
    }
    for chunk in buffer.chunks_mut(8) {
        let word = hardware_word(source).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// 32 bytes from the low bits of 4096 TSC deltas around PIT counter reads (port I/O, whose
/// timing varies), mixed with SplitMix64's finaliser.
fn tsc_jitter_seed() -> [u8; 32] {
    let mut state = [0u64; 4];
    let mut previous = rdtsc();
    for sample in 0..4096usize {
        // SAFETY: latching and reading PIT channel 0's counter touches no memory.
        unsafe {
            x86_64::instructions::port::Port::<u8>::new(0x43).write(0x00);
            let _: u8 = x86_64::instructions::port::Port::new(0x40).read();
            let _: u8 = x86_64::instructions::port::Port::new(0x40).read();
        }
        let now = rdtsc();
        let lane = &mut state[sample % 4];
        *lane = mix(*lane ^ now.wrapping_sub(previous) ^ (sample as u64) << 48);
        previous = now;
    }
    let mut seed = [0u8; 32];
    for (bytes, lane) in seed.chunks_mut(8).zip(state) {
        bytes.copy_from_slice(&lane.to_le_bytes());
    }
    seed
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
