//! Builds the apps in `apps/` for wasm32-wasip1 and embeds them as the demo system image.
//!
//! The apps are a cargo workspace of their own (they target wasm, the kernel targets the host),
//! built with a nested `cargo build` into `<target>/wasm-apps`, as wasmtime's test programs are.
//! The one C test program, `apps/tests/wasi-c`, is compiled with clang and wasi-libc when they
//! are installed, and left out (with a warning) when they are not.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";
const THREADS_TARGET: &str = "wasm32-wasip1-threads";
/// The C test program: `apps/tests/wasi-c/main.c`, embedded as `wasi-c` when it can be built.
const C_PROGRAM: &str = "wasi-c";
/// Where Debian's `wasi-libc` package puts the wasm32-wasi headers and libraries.
const WASI_SYSROOT: &str = "/usr";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..").canonicalize().expect("the repository root exists");
    let apps = root.join("apps");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>/out: build the apps beside the profiles.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR lies inside the target directory")
        .join("wasm-apps");
    for watched in ["apps", "crates/sip", "crates/abi/src"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    // `nebulet new` takes the SDK by default from the git repository this checkout was cloned
    // from (src/new.rs), when it was cloned from one.
    let origin = Command::new("git")
        .args(["remote", "get-url", "origin"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|url| url.trim().to_string())
        .unwrap_or_default();
    println!("cargo::rustc-env=NEBULET_CLONED_FROM={origin}");

    // Apps that use threads say so in `[package.metadata.nebulet] target = "..."`.
    let programs: Vec<(String, PathBuf)> = app_names(&apps)
        .into_iter()
        .map(|name| (name.clone(), apps.join(&name)))
        .chain(
            app_names(&apps.join("tests"))
                .into_iter()
                .map(|name| (name.clone(), apps.join("tests").join(&name))),
        )
        .collect();
    let threaded: Vec<&str> = programs
        .iter()
        .filter(|(_, folder)| {
            std::fs::read_to_string(folder.join("Cargo.toml"))
                .is_ok_and(|text| text.contains(THREADS_TARGET))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let mut targets = vec![TARGET];
    if !threaded.is_empty() {
        targets.push(THREADS_TARGET);
    }
    require_targets(&targets);
    let mut plain = vec!["--workspace".to_string()];
    plain.extend(threaded.iter().flat_map(|name| ["--exclude".to_string(), name.to_string()]));
    build(&apps, &target_dir, TARGET, &plain);
    if !threaded.is_empty() {
        let packages: Vec<String> =
            threaded.iter().flat_map(|name| ["-p".to_string(), name.to_string()]).collect();
        build(&apps, &target_dir, THREADS_TARGET, &packages);
    }

    // The C test program, when clang and the wasi-libc sysroot are installed.
    let c_programs: Vec<(String, PathBuf)> =
        build_c(&apps.join("tests").join(C_PROGRAM), &out_dir).into_iter().collect();

    let mut source = String::new();
    for (constant, folder, what, extra) in [
        ("APPS", apps.clone(), "The apps of the demo image", &[][..]),
        ("TEST_PROGRAMS", apps.join("tests"), "The test programs", &c_programs[..]),
    ] {
        writeln!(
            source,
            "/// {what}: (name, wasm bytes).\npub const {constant}: &[(&str, &[u8])] = &["
        )
        .expect("writing to a String");
        for name in app_names(&folder) {
            let target = if threaded.contains(&name.as_str()) { THREADS_TARGET } else { TARGET };
            let wasm = target_dir.join(target).join("release").join(format!("{name}.wasm"));
            assert!(wasm.exists(), "{} was not built", wasm.display());
            writeln!(source, "    ({name:?}, include_bytes!({:?})),", wasm.display().to_string())
                .expect("writing to a String");
        }
        for (name, wasm) in extra {
            writeln!(source, "    ({name:?}, include_bytes!({:?})),", wasm.display().to_string())
                .expect("writing to a String");
        }
        source.push_str("];\n");
    }
    let manifest = apps.join("image.manifest");
    writeln!(
        source,
        "/// The manifest of the demo image.\npub const MANIFEST: &str = include_str!({:?});",
        manifest.display().to_string()
    )
    .expect("writing to a String");
    std::fs::write(out_dir.join("image.rs"), source).expect("cannot write image.rs");
}

/// Fails the build, naming the `rustup target add` line, if the toolchain lacks a target the
/// apps need (rather than leaving the nested build to fail with "can't find crate for `core`").
/// A target is installed when the sysroot holds `lib/rustlib/TARGET/lib`.
fn require_targets(targets: &[&str]) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else { return };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|target| !sysroot.join("lib/rustlib").join(target).join("lib").is_dir())
        .collect();
    if output.status.success() && !missing.is_empty() {
        panic!(
            "the Rust toolchain lacks the target(s) {} that the apps are built for (rustup's \
             automatic install may be off): run `rustup target add {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
}

/// Builds packages of the apps workspace for one target, in release mode.
fn build(apps: &Path, target_dir: &Path, target: &str, packages: &[String]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", target, "--manifest-path"])
        .arg(apps.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(packages)
        // Flags meant for the host build must not reach the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the apps");
    if !status.success() {
        panic!(
            "building the apps for {target} failed (see above). If the target is missing: \
             `rustup target add {target}` (rust-toolchain.toml names it)"
        );
    }
}

/// The programs in a folder of the apps workspace: every sub-folder with a Cargo.toml.
fn app_names(apps: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(apps) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Compiles the C test program in `folder` (its `main.c`) with clang against the wasi-libc
/// sysroot, into OUT_DIR.
///
/// Without clang, wasm-ld, wasi-libc or clang's wasm32 builtins (Debian: `apt-get install clang
/// lld wasi-libc libclang-rt-14-dev-wasm32`) it warns and returns `None`: the program is then not
/// embedded, and its tests are marked ignored with the reason (cfg `nebulet_no_c_program`), so
/// `cargo test` shows them as skipped. Where the environment variable CI is set, or when clang
/// and the rest are installed but the compilation fails, the build fails instead.
fn build_c(folder: &Path, out_dir: &Path) -> Option<(String, PathBuf)> {
    println!("cargo::rustc-check-cfg=cfg(nebulet_no_c_program)");
    println!("cargo::rerun-if-env-changed=CI");
    let source = folder.join("main.c");
    if let Some(missing) = missing_c_toolchain() {
        let message = format!(
            "the C test program {C_PROGRAM} is not built ({missing}); its tests are ignored. \
             Install clang and wasi-libc (Debian: apt-get install clang lld wasi-libc \
             libclang-rt-14-dev-wasm32)"
        );
        if env::var_os("CI").is_some() {
            panic!("{message}, but CI is set, and CI installs them");
        }
        println!("cargo::warning={message}");
        println!("cargo::rustc-cfg=nebulet_no_c_program");
        return None;
    }
    let output = out_dir.join(format!("{C_PROGRAM}.wasm"));
    let finished = Command::new("clang")
        .args(["--target=wasm32-wasi", &format!("--sysroot={WASI_SYSROOT}")])
        .args(["-O2", "-Wall", "-o"])
        .arg(&output)
        .arg(&source)
        .output()
        .expect("clang ran a moment ago");
    if !finished.status.success() {
        panic!(
            "clang failed to compile {} ({}):\n{}",
            source.display(),
            finished.status,
            String::from_utf8_lossy(&finished.stderr)
        );
    }
    Some((C_PROGRAM.into(), output))
}

/// What the C test program's toolchain lacks, if anything: clang, wasm-ld, the wasi-libc
/// sysroot or clang's wasm32 builtins library.
fn missing_c_toolchain() -> Option<String> {
    let clang = |arguments: &[&str]| {
        Command::new("clang")
            .arg("--target=wasm32-wasi")
            .args(arguments)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let Some(_) = clang(&["--version"]) else { return Some("no clang".into()) };
    let exists = |path: &str| Path::new(path).is_absolute() && Path::new(path).exists();
    let linker = clang(&["-print-prog-name=wasm-ld"]).unwrap_or_default();
    if !exists(&linker) && which("wasm-ld").is_none() {
        return Some("no wasm-ld (package lld)".into());
    }
    let header = Path::new(WASI_SYSROOT).join("include/wasm32-wasi/stdio.h");
    if !header.exists() {
        return Some(format!("no wasi-libc: {} is missing", header.display()));
    }
    let builtins = clang(&["--rtlib=compiler-rt", "-print-libgcc-file-name"]).unwrap_or_default();
    if !exists(&builtins) {
        return Some(format!("no wasm32 builtins for clang: {builtins} is missing"));
    }
    None
}

/// The path of a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|folder| folder.join(program))
        .find(|path| path.is_file())
}
