//! The command's module files: reading them, the cache they compile through, the notice of a
//! long compile, and precompiled `.cwasm` files.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use nebulet_hosted::{
    DEFAULT_CACHE_LIMIT, Emulator, ModuleCache, is_compiled, module_binary, wasmtime,
};

use crate::arguments::DirectoryArgument;

/// The largest module file the command reads.
const MAX_MODULE_BYTES: u64 = 256 << 20;

/// How long a compile runs before the command says it is compiling.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// The bytes of `file`: at most [`MAX_MODULE_BYTES`] (a device or a pipe without end is refused
/// once it passes it).
pub(crate) fn read(file: &Path) -> Result<Vec<u8>, String> {
    let cannot_read = |error: std::io::Error| format!("cannot read {}: {error}", file.display());
    let too_large = || format!("{} is larger than {} MiB", file.display(), MAX_MODULE_BYTES >> 20);
    let opened = std::fs::File::open(file).map_err(cannot_read)?;
    let size = opened.metadata().map_err(cannot_read)?.len();
    if size > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    // Sized up front (`take` hides the file's size from `read_to_end`).
    let mut bytes = Vec::with_capacity(size as usize);
    opened.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The cache of compiled modules, unless it is turned off, cannot be used (said on stderr), or
/// lies inside a directory given to the program: a program that could write to the cache could
/// put machine code there that a later run would load.
pub(crate) fn cache(enabled: bool, directories: &[DirectoryArgument]) -> Option<ModuleCache> {
    if !enabled {
        return None;
    }
    let cache = match ModuleCache::open(&ModuleCache::default_directory()?, DEFAULT_CACHE_LIMIT) {
        Ok(cache) => cache,
        Err(message) => {
            tracing::warn!("{message}");
            return None;
        }
    };
    let inside = cache.directory().canonicalize().ok()?;
    let exposed = directories
        .iter()
        .any(|directory| directory.host.canonicalize().is_ok_and(|host| inside.starts_with(host)));
    (!exposed).then_some(cache)
}

/// The module of `bytes`, read from `file`: compiled (`.wasm`, `.wat`, with a notice if that
/// takes long), or loaded if it is precompiled and `precompiled` allows that.
pub(crate) fn load(
    emulator: &Emulator,
    file: &Path,
    bytes: &[u8],
    precompiled: Precompiled,
) -> Result<wasmtime::Module, String> {
    if is_compiled(bytes) {
        if precompiled == Precompiled::Refused {
            return Err(format!(
                "{} is precompiled: running it takes --allow-precompiled (only for files made \
                 by `nebulet compile`)",
                file.display()
            ));
        }
        return emulator
            .load_precompiled(bytes)
            .map_err(|error| format!("cannot load {}: {error}", file.display()));
    }
    let binary = module_binary(bytes, Some(file))?;
    with_notice(file, || emulator.compile(&binary))
        .map_err(|reason| format!("cannot load {}: {reason}", file.display()))
}

/// Whether `nebulet run` may load a precompiled file (`--allow-precompiled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precompiled {
    Allowed,
    Refused,
}

/// Runs `compile`; if it takes longer than [`NOTICE_AFTER`] and stderr is a terminal, says on
/// stderr that `file` is compiling, and clears that line once it is done.
pub(crate) fn with_notice<T>(file: &Path, compile: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return compile();
    }
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if waiting.recv_timeout(NOTICE_AFTER) == Err(RecvTimeoutError::Timeout) {
                eprint!("nebulet: compiling {}...", file.display());
                // Returns once `done` is dropped.
                let _ = waiting.recv();
                eprint!("\r\x1b[2K");
            }
        });
        let result = compile();
        drop(done);
        result
    })
}

/// The separator of the wasm backtrace in a trap's message (`crates/kernel/src/runner.rs`).
const BACKTRACE: &str = "; wasm backtrace: ";

/// A trap message with the program's own frames only: the frames of Rust's standard library
/// and the libc start-up code (a panic's way to its abort) are left out, with a count of them
/// (`-v` shows all).
pub(crate) fn program_frames(message: &str) -> String {
    let Some((reason, frames)) = message.split_once(BACKTRACE) else { return message.into() };
    let frames: Vec<&str> = frames.split(" <- ").collect();
    // Only Rust programs have std frames to hide; other programs' backtraces stay whole.
    if !frames.iter().any(|frame| is_standard_library(frame)) {
        return message.into();
    }
    let own: Vec<&str> = frames.iter().copied().filter(|frame| !is_runtime_frame(frame)).collect();
    let hidden = frames.len() - own.len();
    if hidden == 0 || own.is_empty() {
        return message.into();
    }
    format!(
        "{reason}{BACKTRACE}{} ({hidden} frames of std and libc hidden, -v shows them)",
        own.join(" <- ")
    )
}

/// Whether a frame belongs to Rust's standard library.
fn is_standard_library(frame: &str) -> bool {
    const PREFIXES: [&str; 6] = ["std::", "core::", "alloc::", "__rustc::", "<std::", "<core::"];
    PREFIXES.iter().any(|prefix| frame.starts_with(prefix))
}

/// Whether a frame belongs to the standard library or libc's start-up code.
fn is_runtime_frame(frame: &str) -> bool {
    const NAMES: [&str; 5] = ["abort", "_start", "__main_void", "__original_main", "main"];
    is_standard_library(frame) || NAMES.contains(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_shows_the_programs_frames() {
        let message = "trapped: wasm trap: wasm `unreachable` instruction executed; wasm \
            backtrace: abort <- std::sys::pal::wasi::helpers::abort_internal <- \
            std::process::abort <- __rustc::__rust_abort <- core::panicking::panic_fmt <- \
            wasi_std::check::{{closure}} <- wasi_std::files <- wasi_std::main <- \
            std::sys::backtrace::__rust_begin_short_backtrace <- __main_void <- _start";
        assert_eq!(
            program_frames(message),
            "trapped: wasm trap: wasm `unreachable` instruction executed; wasm backtrace: \
             wasi_std::check::{{closure}} <- wasi_std::files <- wasi_std::main (8 frames of \
             std and libc hidden, -v shows them)"
        );
        // A wat program's frames stay, and so does a message without frames.
        let wat = "trapped: unreachable; wasm backtrace: deep <- _start";
        assert_eq!(program_frames(wat), wat);
        assert_eq!(program_frames("killed"), "killed");
    }
}
