//! Fast random bytes: a ChaCha8 generator seeded from the platform's secure entropy.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::platform::Platform;

#[derive(Debug)]
pub(crate) struct FastRandom {
    generator: crate::sync::Mutex<ChaCha8Rng>,
}

impl FastRandom {
    /// `ERR_IO` if the platform has no entropy to seed it with.
    pub(crate) fn new(platform: &dyn Platform) -> Result<Self, nebulet_abi::Error> {
        Ok(Self { generator: crate::sync::Mutex::new(ChaCha8Rng::from_seed(seed(platform)?)) })
    }

    pub(crate) fn fill(&self, buffer: &mut [u8]) {
        self.generator.lock().fill_bytes(buffer);
    }

    /// A fresh 32-byte seed (for handle tables).
    pub(crate) fn seed(&self) -> [u8; 32] {
        let mut seed = [0; 32];
        self.fill(&mut seed);
        seed
    }
}

fn seed(platform: &dyn Platform) -> Result<[u8; 32], nebulet_abi::Error> {
    let mut seed = [0; 32];
    platform.fill_secure_random(&mut seed)?;
    Ok(seed)
}
