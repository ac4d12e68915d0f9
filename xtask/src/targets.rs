//! The rustup targets xtask's builds need: checked before a build, so that a missing one is
//! named with the command that adds it, not met as "can't find crate for `core`".

use std::path::PathBuf;
use std::process::Command;

/// Fails, naming the `rustup target add` line, if the toolchain lacks any of `targets`.
///
/// A target is installed when the toolchain's sysroot holds `lib/rustlib/TARGET/lib` (what
/// `rustup target add` puts there; a toolchain not managed by rustup has the same layout).
pub(crate) fn require(targets: &[&str]) -> Result<(), String> {
    let Some(sysroot) = sysroot() else { return Ok(()) };
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|target| !sysroot.join("lib/rustlib").join(target).join("lib").is_dir())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the Rust toolchain lacks the target{} {} (rustup's automatic install may be off): \
         run `rustup target add {}`",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        missing.join(" ")
    ))
}

/// The sysroot of the toolchain cargo builds with, or `None` if rustc cannot say (then the
/// build itself reports any problem).
fn sysroot() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .current_dir(crate::root())
        .output()
        .ok()?;
    output.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_target_is_named_with_the_command_that_adds_it() {
        let error = require(&["wasm32-wasip1", "no-such-target-at-all"]).unwrap_err();
        assert!(error.contains("lacks the target no-such-target-at-all"), "{error}");
        assert!(error.ends_with("run `rustup target add no-such-target-at-all`"), "{error}");
        // The targets rust-toolchain.toml names are installed where these tests run.
        require(&[super::super::WASM_TARGET, super::super::THREADS_TARGET]).unwrap();
    }
}
