//! The bare-metal system image: what the host writes and the bare-metal kernel boots.
//!
//! Bare metal has no compiler: the host compiles every app with Cranelift for
//! `x86_64-unknown-none` ([`precompile`], feature `precompile`), packs the manifest and the
//! compiled apps into one image ([`write`]), and QEMU hands it to the kernel as its `-initrd`.
//! The kernel reads it in place ([`parse`]) and loads each app with wasmtime's
//! `Module::deserialize`. Both sides build their engines from [`engine_config`], so the settings
//! wasmtime checks when it loads precompiled code match by construction.
//!
//! # Format
//!
//! All integers are little-endian `u32`s:
//!
//! ```text
//! "NEBIMG01"                                  magic (8 bytes)
//! manifest length, manifest                   UTF-8 text (apps/image.manifest)
//! app count
//! app count times:
//!     name length, name                       UTF-8, non-empty, unique
//!     code length
//!     padding                                 zeros, to the next multiple of CODE_ALIGNMENT
//!     code                                    wasmtime's precompiled module (an ELF file)
//! ```
//!
//! The padding puts each app's code at a multiple of [`CODE_ALIGNMENT`] from the image's start,
//! so that a kernel whose image lies page-aligned in memory (QEMU loads the initrd so) runs the
//! code where it lies (`Module::deserialize_raw`) instead of copying it to its heap. Nothing
//! follows the last app. The image carries no checksum: it is trusted like the kernel
//! it is booted with (see `crates/metal`).
#![no_std]
// The crate is part of the bare-metal boundary; its one `unsafe` block is in `engine_config`.
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "precompile")]
extern crate std;

use alloc::vec::Vec;
use core::fmt;

/// The first eight bytes of an image (format version 2: code aligned).
pub const MAGIC: &[u8; 8] = b"NEBIMG02";

/// Where each app's code starts: a multiple of this many bytes from the image's start (the
/// page size, which wasmtime requires of code it runs in place on the kernel's engine).
pub const CODE_ALIGNMENT: usize = 4096;

/// The target the apps are compiled for: the kernel's own.
pub const TARGET: &str = "x86_64-unknown-none";

/// The Cranelift x86 flags apps are compiled with: SSE up to 4.2 and nothing that needs AVX
/// (VEX-encoded) state, which the bare-metal kernel does not enable. SSE4.1 makes the float
/// rounding instructions native and SSSE3 the shuffles, so no compiled code calls the host
/// with a float in a register (see the SAFETY comment in [`engine_config`]).
pub const CRANELIFT_FLAGS: [&str; 4] = ["has_sse3", "has_ssse3", "has_sse41", "has_sse42"];

/// The extra capacity a linear memory gets beyond its size, so that small `memory.grow`s do not
/// move it (there is no virtual memory to reserve address space with).
pub const MEMORY_RESERVATION_FOR_GROWTH: u64 = 64 << 10;

/// Bytes of each fiber stack (a thread's): 512 KiB, from the kernel's heap.
pub const STACK_BYTES: u64 = 512 << 10;

/// The wasmtime configuration of bare-metal engines: the host precompiler's and the kernel's.
///
/// Everything a precompiled module records and wasmtime checks at load time is set here
/// explicitly rather than left to defaults (which depend on wasmtime's cargo features, and so
/// differ between the host and the kernel): epoch interruption on; no signals-based traps, no
/// reserved address space and no guard pages (explicit bounds checks: bare metal has neither
/// signals nor virtual memory to spare); no copy-on-write memory images; no threads, no
/// relaxed SIMD, no GC, exceptions or component model. The host side additionally sets
/// [`CRANELIFT_FLAGS`] (the kernel has no compiler; it checks the flags recorded in each module
/// against its CPU instead) and, in [`precompile`], the target.
#[expect(unsafe_code, reason = "the float-ABI opt-in and the Cranelift ISA flags are unsafe")]
pub fn engine_config() -> wasmtime::Config {
    use wasmtime::WasmFeatures;

    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .guard_before_linear_memory(false)
        .memory_reservation_for_growth(MEMORY_RESERVATION_FOR_GROWTH)
        .memory_init_cow(false)
        // Fiber stacks come from the kernel's heap: 512 KiB each, not wasmtime's 2 MiB
        // (the apps keep their own stacks in linear memory; host calls are shallow).
        .async_stack_size(STACK_BYTES as usize)
        .max_wasm_stack(256 << 10)
        .concurrency_support(false)
        .wasm_relaxed_simd(false)
        .wasm_features(
            WasmFeatures::THREADS
                | WasmFeatures::SHARED_EVERYTHING_THREADS
                | WasmFeatures::RELAXED_SIMD
                | WasmFeatures::GC_TYPES
                | WasmFeatures::GC
                | WasmFeatures::EXCEPTIONS
                | WasmFeatures::LEGACY_EXCEPTIONS
                | WasmFeatures::STACK_SWITCHING
                | WasmFeatures::COMPONENT_MODEL
                | WasmFeatures::CM_ASYNC,
            false,
        );
    // SAFETY: `x86_float_abi_ok(true)` tells wasmtime that no float crosses the boundary between
    // compiled wasm and the kernel in a register, although the kernel's target
    // (x86_64-unknown-none) passes floats in general-purpose registers (soft-float ABI). The only
    // such crossings are wasmtime's float libcalls (ceil/floor/trunc/nearest without SSE4.1,
    // shuffles without SSSE3, fma for relaxed SIMD); apps are compiled with `CRANELIFT_FLAGS`
    // (SSE4.1 and SSSE3 included) and with relaxed SIMD off, so Cranelift emits native
    // instructions and none of those libcalls. Host functions exchange values through memory
    // (`ValRaw` arrays), not float registers. The kernel's boot code enables SSE (CR4.OSFXSR,
    // CR4.OSXMMEXCPT, CR0.EM clear), and the kernel's own code never touches the SSE registers
    // (soft-float), so interrupts and fiber switches cannot corrupt wasm's. The Cranelift flags
    // only describe CPU features: the kernel's engine checks each enabled one against its CPU
    // (`Config::detect_host_feature`, cpuid) before it loads a module, and refuses the module if
    // the CPU lacks it.
    unsafe {
        config.x86_float_abi_ok(true);
        #[cfg(feature = "precompile")]
        for flag in CRANELIFT_FLAGS {
            config.cranelift_flag_enable(flag);
        }
    }
    config
}

/// One app of an image: its name and its precompiled module, borrowed from the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    /// The name the manifest starts it by.
    pub name: &'a str,
    /// wasmtime's precompiled module (`Engine::precompile_module`).
    pub code: &'a [u8],
}

/// A parsed image, borrowing from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image<'a> {
    /// The manifest `init` runs.
    pub manifest: &'a str,
    /// The apps, in the order they were written.
    pub apps: Vec<App<'a>>,
}

impl<'a> Image<'a> {
    /// The app called `name`.
    pub fn app(&self, name: &str) -> Option<&App<'a>> {
        self.apps.iter().find(|app| app.name == name)
    }
}

/// Why bytes are not an image (or an image cannot be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The bytes do not start with [`MAGIC`] (not an image, or another version of the format).
    BadMagic,
    /// The bytes end inside `what`, which starts at byte `at`.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Its offset in the image.
        at: usize,
    },
    /// `what`, at byte `at`, is not UTF-8.
    NotUtf8 {
        /// What was being read.
        what: &'static str,
        /// Its offset in the image.
        at: usize,
    },
    /// An app's name, at byte `at`, is empty.
    EmptyName {
        /// Its offset in the image.
        at: usize,
    },
    /// Two apps have the same name (the second one's name is at byte `at`).
    DuplicateName {
        /// Its offset in the image.
        at: usize,
    },
    /// The padding before an app's code, from byte `at`, is not all zeros.
    NonZeroPadding {
        /// Its offset in the image.
        at: usize,
    },
    /// Bytes follow the last app, from byte `at`.
    TrailingBytes {
        /// The offset of the first one.
        at: usize,
    },
    /// (Writing) `what` is longer than a `u32` can say.
    TooLarge {
        /// What was too large.
        what: &'static str,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(
                formatter,
                "not a Nebulet image: it does not start with {:?}",
                core::str::from_utf8(MAGIC).unwrap_or_default()
            ),
            Self::Truncated { what, at } => {
                write!(formatter, "the image is truncated: it ends inside the {what} at byte {at}")
            }
            Self::NotUtf8 { what, at } => write!(formatter, "the {what} at byte {at} is not UTF-8"),
            Self::EmptyName { at } => write!(formatter, "the app name at byte {at} is empty"),
            Self::DuplicateName { at } => {
                write!(formatter, "the app name at byte {at} names a second app of that name")
            }
            Self::NonZeroPadding { at } => {
                write!(formatter, "the padding at byte {at} is not zeros")
            }
            Self::TrailingBytes { at } => {
                write!(formatter, "the image has bytes after its last app, from byte {at}")
            }
            Self::TooLarge { what } => write!(formatter, "the {what} is too large for an image"),
        }
    }
}

impl core::error::Error for ImageError {}

/// Reads an image in place: the manifest and the apps borrow from `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Image<'_>, ImageError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len(), "magic").ok() != Some(&MAGIC[..]) {
        return Err(ImageError::BadMagic);
    }
    let manifest = reader.text("manifest")?;
    let count = reader.length("app count")?;
    // Each app takes at least 8 bytes: a corrupt count cannot make this allocate much.
    let mut apps: Vec<App<'_>> = Vec::with_capacity(count.min(reader.remaining() / 8));
    for _ in 0..count {
        let name_at = reader.at;
        let name = reader.text("app name")?;
        if name.is_empty() {
            return Err(ImageError::EmptyName { at: name_at });
        }
        if apps.iter().any(|app| app.name == name) {
            return Err(ImageError::DuplicateName { at: name_at });
        }
        let length = reader.length("app code length")?;
        let padding = reader.at.next_multiple_of(CODE_ALIGNMENT) - reader.at;
        let padding_at = reader.at;
        if reader.take(padding, "app code padding")?.iter().any(|&byte| byte != 0) {
            return Err(ImageError::NonZeroPadding { at: padding_at });
        }
        let code = reader.take(length, "app code")?;
        apps.push(App { name, code });
    }
    if reader.remaining() != 0 {
        return Err(ImageError::TrailingBytes { at: reader.at });
    }
    Ok(Image { manifest, apps })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, length: usize, what: &'static str) -> Result<&'a [u8], ImageError> {
        if length > self.remaining() {
            return Err(ImageError::Truncated { what, at: self.at });
        }
        let taken = &self.bytes[self.at..self.at + length];
        self.at += length;
        Ok(taken)
    }

    fn length(&mut self, what: &'static str) -> Result<usize, ImageError> {
        let bytes = self.take(4, what)?;
        let value = u32::from_le_bytes(bytes.try_into().expect("took 4 bytes"));
        // u32 fits in usize on the 64-bit targets this crate serves.
        Ok(value as usize)
    }

    fn text(&mut self, what: &'static str) -> Result<&'a str, ImageError> {
        let length = self.length(what)?;
        let at = self.at;
        let bytes = self.take(length, what)?;
        core::str::from_utf8(bytes).map_err(|_| ImageError::NotUtf8 { what, at })
    }
}

/// Writes an image of `manifest` and `apps` (name, precompiled module). The names must be
/// non-empty and unique, as [`parse`] requires.
#[cfg(feature = "precompile")]
pub fn write(manifest: &str, apps: &[(&str, &[u8])]) -> Result<Vec<u8>, ImageError> {
    fn length(image: &mut Vec<u8>, length: usize, what: &'static str) -> Result<(), ImageError> {
        let length = u32::try_from(length).map_err(|_| ImageError::TooLarge { what })?;
        image.extend_from_slice(&length.to_le_bytes());
        Ok(())
    }
    let size = MAGIC.len()
        + 8
        + manifest.len()
        + apps
            .iter()
            .map(|(name, code)| 8 + name.len() + CODE_ALIGNMENT + code.len())
            .sum::<usize>();
    let mut image = Vec::with_capacity(size);
    image.extend_from_slice(MAGIC);
    length(&mut image, manifest.len(), "manifest")?;
    image.extend_from_slice(manifest.as_bytes());
    length(&mut image, apps.len(), "app count")?;
    for (index, (name, code)) in apps.iter().enumerate() {
        if name.is_empty() {
            return Err(ImageError::EmptyName { at: image.len() });
        }
        if apps[..index].iter().any(|(other, _)| other == name) {
            return Err(ImageError::DuplicateName { at: image.len() });
        }
        length(&mut image, name.len(), "app name")?;
        image.extend_from_slice(name.as_bytes());
        length(&mut image, code.len(), "app code")?;
        image.resize(image.len().next_multiple_of(CODE_ALIGNMENT), 0);
        image.extend_from_slice(code);
    }
    Ok(image)
}

/// The host's engine for compiling apps for the bare-metal kernel: [`engine_config`] with
/// the target set to [`TARGET`].
#[cfg(feature = "precompile")]
pub fn precompile_engine() -> wasmtime::Result<wasmtime::Engine> {
    let mut config = engine_config();
    config.target(TARGET)?;
    wasmtime::Engine::new(&config)
}

/// Compiles wasm bytes for the bare-metal kernel: the kernel's rewrite of atomic waits
/// ([`nebulet_kernel::prepare_module`]), then Cranelift with [`precompile_engine`].
#[cfg(feature = "precompile")]
pub fn precompile(wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    precompile_with(&precompile_engine()?, wasm)
}

/// [`precompile`] with an engine made once by [`precompile_engine`] (for many apps).
#[cfg(feature = "precompile")]
pub fn precompile_with(engine: &wasmtime::Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let prepared = nebulet_kernel::prepare_module(wasm).map_err(wasmtime::Error::msg)?;
    engine.precompile_module(&prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    /// An image made by hand (as `write` makes it), so that parsing is tested on its own.
    fn sample() -> Vec<u8> {
        fn field(image: &mut Vec<u8>, bytes: &[u8]) {
            image.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            image.extend_from_slice(bytes);
        }
        let mut image = MAGIC.to_vec();
        field(&mut image, b"service echo\nstart hello\n");
        image.extend_from_slice(&2u32.to_le_bytes());
        let code = |image: &mut Vec<u8>, bytes: &[u8]| {
            image.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            image.resize(image.len().next_multiple_of(CODE_ALIGNMENT), 0);
            image.extend_from_slice(bytes);
        };
        field(&mut image, b"echo");
        code(&mut image, &[1, 2, 3]);
        field(&mut image, b"hello");
        code(&mut image, &[]);
        image
    }

    #[test]
    fn parses_an_image_in_place() {
        let bytes = sample();
        let image = parse(&bytes).unwrap();
        assert_eq!(image.manifest, "service echo\nstart hello\n");
        assert_eq!(
            image.apps,
            vec![App { name: "echo", code: &[1, 2, 3] }, App { name: "hello", code: &[] }]
        );
        assert_eq!(image.app("echo").unwrap().code, &[1, 2, 3]);
        assert!(image.app("init").is_none());
        // Zero-copy: the fields point into the bytes.
        let range = bytes.as_ptr_range();
        assert!(range.contains(&image.manifest.as_ptr()));
        assert!(range.contains(&image.apps[0].code.as_ptr()));
        // Each app's code lies at a multiple of CODE_ALIGNMENT from the start.
        let offset = image.apps[0].code.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(offset, CODE_ALIGNMENT);
    }

    #[cfg(feature = "precompile")]
    #[test]
    fn writes_what_it_parses() {
        let apps: [(&str, &[u8]); 2] = [("echo", &[1, 2, 3]), ("hello", &[])];
        let bytes = write("service echo\nstart hello\n", &apps).unwrap();
        assert_eq!(bytes, sample());
        let image = parse(&bytes).unwrap();
        let round_trip: Vec<(&str, &[u8])> =
            image.apps.iter().map(|app| (app.name, app.code)).collect();
        assert_eq!(round_trip, apps);
        assert_eq!(write("", &[]).map(|bytes| parse(&bytes).unwrap().apps.len()), Ok(0));
    }

    #[cfg(feature = "precompile")]
    #[test]
    fn refuses_to_write_names_it_could_not_read() {
        assert_eq!(write("", &[("", &[])]), Err(ImageError::EmptyName { at: 16 }));
        assert!(matches!(
            write("", &[("a", &[]), ("a", &[])]),
            Err(ImageError::DuplicateName { .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for length in 0..bytes.len() {
            let error = parse(&bytes[..length]).unwrap_err();
            if length < MAGIC.len() {
                assert_eq!(error, ImageError::BadMagic, "length {length}");
            } else {
                assert!(matches!(error, ImageError::Truncated { .. }), "length {length}: {error}");
            }
        }
    }

    #[test]
    fn corrupt_images_are_refused_with_reasons() {
        let good = sample();
        let corrupt = |offset: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[offset] = byte;
            parse(&bytes).map(|_| ()).unwrap_err()
        };
        // An image of format version 1 (code not aligned) is refused.
        assert_eq!(corrupt(7, b'1'), ImageError::BadMagic);
        // The manifest's length claims more than there is.
        assert_eq!(corrupt(11, 0x10), ImageError::Truncated { what: "manifest", at: 12 });
        assert_eq!(corrupt(12, 0xFF), ImageError::NotUtf8 { what: "manifest", at: 12 });
        // The app count (at 37) claims a third app.
        assert_eq!(corrupt(37, 3), ImageError::Truncated { what: "app name", at: good.len() });
        // The padding after echo's code length (at 49) must be zeros.
        assert_eq!(corrupt(60, 1), ImageError::NonZeroPadding { at: 53 });
        // The second name becomes "echo"'s twin, then empty.
        let mut twin = good.clone();
        let second = good.windows(5).rposition(|window| window == b"hello").unwrap();
        twin[second - 4] = 4;
        twin[second..second + 4].copy_from_slice(b"echo");
        twin.remove(second + 4);
        assert_eq!(parse(&twin), Err(ImageError::DuplicateName { at: second - 4 }));
        let mut empty = good.clone();
        empty[second - 4] = 0;
        empty.drain(second..second + 5);
        assert_eq!(parse(&empty), Err(ImageError::EmptyName { at: second - 4 }));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing), Err(ImageError::TrailingBytes { at: good.len() }));
        // A huge app count does not allocate for it before failing.
        let mut huge = good.clone();
        huge[37..41].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge), Err(ImageError::Truncated { .. })));
        // Every message says what is wrong.
        assert!(ImageError::BadMagic.to_string().contains("NEBIMG02"));
    }

    #[cfg(feature = "precompile")]
    #[test]
    fn precompiles_for_bare_metal() {
        let wasm = wat::parse_str(
            r#"(module
                 (func (export "_start"))
                 (func (export "ceil") (param f64) (result f64) local.get 0 f64.ceil))"#,
        )
        .unwrap();
        let code = precompile(&wasm).unwrap();
        assert!(code.starts_with(b"\x7fELF"), "an ELF file");
        assert!(matches!(
            wasmtime::Engine::detect_precompiled(&code),
            Some(wasmtime::Precompiled::Module)
        ));
        // Invalid wasm is an error, not a panic.
        assert!(precompile(b"\0asm\x01\0\0\0\x05").is_err());
    }
}
