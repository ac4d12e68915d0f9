// The compute benchmark, one source for both sides of `cargo xtask bench`: this program builds
// it for wasm32 (`mod compute;`) and xtask `include!`s the same file for the host. Plain Rust,
// no dependencies, no I/O; `usize` is 32 bits on wasm32 and 64 bits on the host.

/// One unit of work: sieves the primes below `limit` (a byte per number: a load/store loop over
/// `limit` bytes of memory) and folds them into an FNV-1a hash with the prime count, so that
/// nothing can be optimised away. `compute(1 << 22)` takes a few milliseconds.
pub fn compute(limit: usize) -> u64 {
    let mut composite = vec![false; limit];
    let mut count = 0u64;
    let mut number = 2;
    while number < limit {
        if !composite[number] {
            count += 1;
            let mut multiple = number.saturating_mul(number);
            while multiple < limit {
                composite[multiple] = true;
                multiple += number;
            }
        }
        number += 1;
    }
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for (number, &is_composite) in composite.iter().enumerate().skip(2) {
        if !is_composite {
            hash = (hash ^ number as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash ^ count
}
