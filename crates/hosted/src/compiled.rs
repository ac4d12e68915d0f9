//! Compiled-module files (cache entries and `nebulet compile`'s `.cwasm`): their header, their
//! checksum, and the one place that turns such bytes back into a module.
//!
//! A file is a header, then wasmtime's serialized module ([`wasmtime::Module::serialize`]):
//!
//! ```text
//! magic        16 bytes   "\0nebulet-module\0"
//! format        4 bytes   u32, little-endian: FORMAT
//! engine       32 bytes   the fingerprint of the engine that compiled it (see `fingerprint`)
//! length        8 bytes   u64, little-endian: the serialized module's length
//! checksum     32 bytes   BLAKE3 of everything before it and of the serialized module
//! module       length bytes
//! ```
//!
//! The checksum covers the whole file, so a truncated or damaged file is refused before any of
//! it reaches wasmtime, whose `Module::deserialize` trusts its input.

use std::hash::{Hash, Hasher};

use wasmtime::{Engine, Module};

/// The first bytes of every compiled-module file (a wasm binary starts with `\0asm`).
const MAGIC: &[u8; 16] = b"\0nebulet-module\0";

/// The layout's version, bumped if the header ever changes.
const FORMAT: u32 = 1;

/// Bytes before the serialized module.
const HEADER_BYTES: usize = MAGIC.len() + 4 + 32 + 8 + 32;

/// What the code compiled by an engine depends on: nebulet's version, the kernel's rewrite of
/// modules before they are compiled, and everything in the engine's configuration that changes
/// the code (wasmtime's compatibility hash: its version, the target and CPU features, the
/// tunables and wasm features). Two engines with the same fingerprint load each other's modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `engine` in this build of nebulet.
    pub fn of(engine: &Engine) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"nebulet compiled module\0");
        hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
        hasher.update(&(nebulet_kernel::PREPARE_SOURCE.len() as u64).to_le_bytes());
        hasher.update(nebulet_kernel::PREPARE_SOURCE.as_bytes());
        engine.precompile_compatibility_hash().hash(&mut Feed(&mut hasher));
        Self(*hasher.finalize().as_bytes())
    }

    /// The cache key of the wasm binary `binary` compiled by this engine, in hex.
    pub(crate) fn key(&self, binary: &[u8]) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.0);
        hasher.update(binary);
        hasher.finalize().to_hex().to_string()
    }
}

/// Feeds what a [`Hash`] writes into BLAKE3: wasmtime gives its compatibility hash only as a
/// `Hash`, and the standard hashers are neither cryptographic nor stable across releases.
struct Feed<'a>(&'a mut blake3::Hasher);

impl Hasher for Feed<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Never read: the digest is taken from the BLAKE3 hasher itself.
    fn finish(&self) -> u64 {
        0
    }
}

/// Why compiled-module bytes were not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// They are not a compiled-module file.
    NotCompiled,
    /// Another nebulet version or engine configuration compiled them.
    Foreign,
    /// Truncated or damaged: the length or the checksum does not match.
    Damaged,
    /// wasmtime refused them (its own check of the engine); the text says why.
    Refused(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotCompiled => formatter.write_str("not a module compiled by nebulet"),
            LoadError::Foreign => formatter.write_str(
                "compiled by another version or configuration of nebulet; compile it again",
            ),
            LoadError::Damaged => {
                formatter.write_str("truncated or damaged (its checksum does not match)")
            }
            LoadError::Refused(reason) => write!(formatter, "refused by wasmtime: {reason}"),
        }
    }
}

/// Whether `bytes` start as a compiled-module file does.
pub fn is_compiled(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// `module`, compiled by `engine`, as a compiled-module file.
pub fn serialize(engine: &Engine, module: &Module) -> Result<Vec<u8>, String> {
    let payload = module.serialize().map_err(|error| format!("cannot serialize: {error:#}"))?;
    Ok(frame(Fingerprint::of(engine), &payload))
}

/// The file of `payload`: only ever given what [`Module::serialize`] returned (see
/// [`deserialize`] for why that matters).
fn frame(fingerprint: Fingerprint, payload: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(HEADER_BYTES + payload.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&FORMAT.to_le_bytes());
    file.extend_from_slice(&fingerprint.0);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let checksum = checksum(&file, payload);
    file.extend_from_slice(&checksum);
    file.extend_from_slice(payload);
    file
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// The module of a compiled-module file, if `engine` (whose fingerprint is `fingerprint`)
/// made it and the file is whole.
pub fn load(engine: &Engine, fingerprint: Fingerprint, bytes: &[u8]) -> Result<Module, LoadError> {
    let verified = verify(fingerprint, bytes)?;
    deserialize(engine, verified)
        .map_err(|error| LoadError::Refused(crate::source::one_line(&format!("{error:#}"))))
}

/// A serialized module whose file's length and checksum matched its header.
struct Verified<'a>(&'a [u8]);

fn verify(fingerprint: Fingerprint, bytes: &[u8]) -> Result<Verified<'_>, LoadError> {
    if !is_compiled(bytes) {
        return Err(LoadError::NotCompiled);
    }
    let Some((header, payload)) = bytes.split_at_checked(HEADER_BYTES) else {
        return Err(LoadError::Damaged);
    };
    let (fields, stored_checksum) = header.split_at(HEADER_BYTES - 32);
    let (format, rest) = fields[MAGIC.len()..].split_at(4);
    let (engine, length) = rest.split_at(32);
    if format != FORMAT.to_le_bytes() || engine != fingerprint.0 {
        return Err(LoadError::Foreign);
    }
    if length != (payload.len() as u64).to_le_bytes()
        || checksum(fields, payload) != stored_checksum
    {
        return Err(LoadError::Damaged);
    }
    Ok(Verified(payload))
}

/// The one `unsafe` of the hosted platform: wasmtime's deserialize.
///
/// [`Module::deserialize`] is sound when given exactly bytes that `Module::serialize` (of any
/// wasmtime version) produced; other bytes could make it run arbitrary code. Here:
/// - the bytes are [`Verified`]: the file's length and BLAKE3 checksum, over all of it, match,
///   so they are the bytes [`frame`] was given, unless someone forged the file on purpose;
/// - [`frame`] is given nothing but `Module::serialize`'s output ([`serialize`] is its only
///   caller);
/// - forging takes writing where the user keeps these files: the cache directory, which is the
///   user's own and writable by no one else (checked when it is opened), and which `nebulet run`
///   does not use while a program is given a directory that contains it; or a `.cwasm` file the
///   user named with `--allow-precompiled`, vouching for it as wasmtime's flag of that name does.
///   Whoever can write there can already run code as the user.
///
/// Files of another wasmtime version or configuration are refused before this (by their
/// fingerprint), and wasmtime checks its own header again.
#[expect(
    unsafe_code,
    reason = "wasmtime's Module::deserialize trusts its input; see the SAFETY note"
)]
fn deserialize(engine: &Engine, verified: Verified<'_>) -> wasmtime::Result<Module> {
    // SAFETY: `verified` holds the unmodified output of `Module::serialize`, as argued above.
    unsafe { Module::deserialize(engine, verified.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_engine(reservation: Option<u64>) -> Engine {
        let options =
            crate::EngineOptions { memory_reservation: reservation, ..Default::default() };
        Engine::new(&options.config()).unwrap()
    }

    #[test]
    fn a_file_loads_only_whole_and_on_the_engine_that_made_it() {
        let engine = new_engine(None);
        let module = Module::new(&engine, "(module (func (export \"f\")))").unwrap();
        let file = serialize(&engine, &module).unwrap();
        let fingerprint = Fingerprint::of(&engine);
        assert!(is_compiled(&file));
        let loaded = load(&engine, fingerprint, &file).unwrap();
        assert!(loaded.get_export("f").is_some());

        for length in [0, 10, HEADER_BYTES - 1, HEADER_BYTES, file.len() - 1] {
            let error = load(&engine, fingerprint, &file[..length]).unwrap_err();
            let expected =
                if length < MAGIC.len() { LoadError::NotCompiled } else { LoadError::Damaged };
            assert_eq!(error, expected, "truncated to {length} bytes");
        }
        for place in [MAGIC.len() + 4 + 32, HEADER_BYTES - 1, HEADER_BYTES, file.len() - 1] {
            let mut damaged = file.clone();
            damaged[place] ^= 1;
            assert_eq!(load(&engine, fingerprint, &damaged).unwrap_err(), LoadError::Damaged);
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(load(&engine, fingerprint, &longer).unwrap_err(), LoadError::Damaged);
        assert_eq!(
            load(&engine, fingerprint, b"\0asm\x01\0\0\0").unwrap_err(),
            LoadError::NotCompiled
        );

        let other = new_engine(Some(1 << 20));
        let other_fingerprint = Fingerprint::of(&other);
        assert_ne!(fingerprint, other_fingerprint);
        assert_eq!(load(&other, other_fingerprint, &file).unwrap_err(), LoadError::Foreign);
    }

    #[test]
    fn keys_depend_on_the_module_and_the_engine() {
        let fingerprint = Fingerprint::of(&new_engine(None));
        assert_eq!(fingerprint, Fingerprint::of(&new_engine(None)));
        let other = Fingerprint::of(&new_engine(Some(1 << 20)));
        assert_eq!(fingerprint.key(b"one"), fingerprint.key(b"one"));
        assert_ne!(fingerprint.key(b"one"), fingerprint.key(b"two"));
        assert_ne!(fingerprint.key(b"one"), other.key(b"one"));
        assert_eq!(fingerprint.key(b"one").len(), 64);
    }
}
