//! `nebulet new NAME`: a ready app project, with the SDK (`sip`) as a dependency.

use std::path::{Component, Path, PathBuf};

/// The git repository the checkout this binary was built from was cloned from (its `origin`;
/// empty if it had none), recorded by build.rs.
const CLONED_FROM: &str = env!("NEBULET_CLONED_FROM");

/// The checkout this binary was built from (`cargo install --path crates/nebulet` builds in
/// place), which may have moved or gone since.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The variable that names the default SDK git repository.
const SDK_GIT_VARIABLE: &str = "NEBULET_SDK_GIT";

/// The toolchain this checkout builds with (`rust-toolchain.toml`): new projects use the same,
/// since the SDK needs its Rust version.
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// Where a new project takes the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sdk {
    /// A git repository holding `crates/sip` (cargo finds the package by name).
    Git(String),
    /// A checkout of this repository, or its `crates/sip` folder.
    Path(PathBuf),
}

/// The SDK a new project takes: `--sdk-path`, else `--sdk-git`, else `$NEBULET_SDK_GIT`, else
/// the git repository the `nebulet` binary's checkout was cloned from, else that checkout
/// itself (as a path dependency) while it is still there. No guessed URL: without any of
/// these, the error says what to pass.
pub(crate) fn chosen_sdk(path: Option<PathBuf>, git: Option<String>) -> Result<Sdk, String> {
    let variable = std::env::var(SDK_GIT_VARIABLE).ok();
    choose(path, git, variable, CLONED_FROM, Path::new(BUILT_FROM))
}

/// [`chosen_sdk`] from what it reads: the options, the variable, the origin and the checkout.
fn choose(
    path: Option<PathBuf>,
    git: Option<String>,
    variable: Option<String>,
    cloned_from: &str,
    built_from: &Path,
) -> Result<Sdk, String> {
    if let Some(path) = path {
        return Ok(Sdk::Path(path));
    }
    let origin = Some(cloned_from.to_string());
    if let Some(url) = [git, variable, origin].into_iter().flatten().find(|url| !url.is_empty()) {
        return Ok(Sdk::Git(url));
    }
    match built_from.canonicalize() {
        Ok(checkout) if checkout.join("crates/sip/Cargo.toml").is_file() => Ok(Sdk::Path(checkout)),
        _ => Err(format!(
            "no SDK to take: pass --sdk-git URL (a git repository of Nebulet) or --sdk-path \
             CHECKOUT (a Nebulet checkout), or set {SDK_GIT_VARIABLE}=URL"
        )),
    }
}

/// Creates the project `directory` (its last component is the package name).
pub(crate) fn create(directory: &Path, sdk: &Sdk) -> Result<(), String> {
    let name = package_name(directory)?;
    if directory.exists() {
        return Err(format!("{} exists already", directory.display()));
    }
    let dependency = match sdk {
        Sdk::Git(url) => format!("sip = {{ git = {url:?} }}"),
        Sdk::Path(path) => {
            let sip = sip_folder(path)?;
            format!("sip = {{ path = {:?} }}", relative_to_project(directory, &sip)?)
        }
    };
    let files = [
        ("Cargo.toml", cargo_toml(&name, &dependency)),
        ("rust-toolchain.toml", rust_toolchain()),
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("src/main.rs", MAIN.replace("NAME", &name)),
        ("README.md", README.replace("NAME", &name)),
    ];
    for (file, text) in files {
        let path = directory.join(file);
        let folder = path.parent().expect("every file lies in the project");
        std::fs::create_dir_all(folder)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    println!("nebulet: created the app project {}", directory.display());
    match sdk {
        Sdk::Git(url) => println!("  the SDK (sip) from git: {url}"),
        Sdk::Path(path) => println!("  the SDK (sip) from the checkout {}", path.display()),
    }
    println!(
        "  cd {} && cargo run --release   # builds it for wasm32-wasip1, runs it with `nebulet run`",
        directory.display()
    );
    Ok(())
}

/// The package name: the directory's last component, as cargo accepts it (letters, digits,
/// `-` and `_`, not starting with a digit).
fn package_name(directory: &Path) -> Result<String, String> {
    let name = directory
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("{} does not end in a name", directory.display()))?;
    let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| !c.is_ascii_digit());
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "`{name}` is not a package name: letters, digits, - and _, not starting with a digit"
        ))
    }
}

/// The SDK's folder in `path`: `path` itself if it is the `sip` package, else
/// `path/crates/sip` (a checkout of this repository).
fn sip_folder(path: &Path) -> Result<PathBuf, String> {
    let is_sip = |folder: &Path| {
        std::fs::read_to_string(folder.join("Cargo.toml"))
            .is_ok_and(|text| text.lines().any(|line| line.trim() == "name = \"sip\""))
    };
    for folder in [path.to_path_buf(), path.join("crates/sip")] {
        if is_sip(&folder) {
            return folder
                .canonicalize()
                .map_err(|error| format!("cannot resolve {}: {error}", folder.display()));
        }
    }
    Err(format!("{} is neither a Nebulet checkout nor its crates/sip folder", path.display()))
}

/// `target` (absolute) as a path from the project `directory` (not yet made): relative when
/// they share a root, so the pair can move together. Written by hand: the common-prefix walk
/// is a few lines, not worth a dependency.
fn relative_to_project(directory: &Path, target: &Path) -> Result<String, String> {
    let parent = directory.parent().filter(|parent| !parent.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    let base = parent
        .canonicalize()
        .map_err(|error| format!("cannot resolve {}: {error}", parent.display()))?
        .join(directory.file_name().expect("checked by package_name"));
    let base: Vec<Component> = base.components().collect();
    let target_parts: Vec<Component> = target.components().collect();
    let shared = base.iter().zip(&target_parts).take_while(|(a, b)| a == b).count();
    let path: PathBuf = if shared <= 1 {
        target.to_path_buf()
    } else {
        std::iter::repeat_n(Component::ParentDir, base.len() - shared)
            .chain(target_parts[shared..].iter().copied())
            .collect()
    };
    path.to_str().map(str::to_string).ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn cargo_toml(name: &str, dependency: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[dependencies]
# The Nebulet SDK. It is not on crates.io: `cargo add sip` would fetch an unrelated crate.
{dependency}

[profile.release]
opt-level = "s"
lto = true

# A project of its own, even inside another cargo workspace.
[workspace]
"#
    )
}

/// This checkout's `rust-toolchain.toml`, with the one target a new project needs.
fn rust_toolchain() -> String {
    let channel = TOOLCHAIN
        .lines()
        .find(|line| line.trim_start().starts_with("channel"))
        .unwrap_or("channel = \"stable\"");
    format!(
        "# The Rust the SDK needs, and the target Nebulet runs (wasm32-wasip2 does not work).\n\
         [toolchain]\n{channel}\ntargets = [\"wasm32-wasip1\"]\nprofile = \"minimal\"\n"
    )
}

const CARGO_CONFIG: &str = r#"# Build for Nebulet's target; `cargo run` runs the module with `nebulet run`.
[build]
target = "wasm32-wasip1"

[target.wasm32-wasip1]
runner = "nebulet run"
"#;

const MAIN: &str = r#"//! NAME: a Nebulet app. It makes a channel, sends a message with a handle through it, and
//! reads it back: the way Nebulet processes talk to each other.

use sip::{Channel, DEADLINE_INFINITE, Event, Rights};

fn main() -> Result<(), sip::Error> {
    let (here, there) = Channel::create()?;
    // A message carries bytes and handles: here, a second handle to an event.
    let event = Event::create()?;
    let copy = event.duplicate(Rights::SAME_RIGHTS)?;
    here.write(b"hello over a channel", vec![copy.into_handle()]).map_err(|failed| failed.error)?;
    let message = there.read_blocking(DEADLINE_INFINITE)?;
    println!(
        "NAME: received {:?} with {} handle",
        String::from_utf8_lossy(&message.bytes),
        message.handles.len()
    );
    Ok(())
}
"#;

const README: &str = r#"# NAME

A Nebulet app: a wasm program that uses the Nebulet SDK (`sip`) for channels, handles,
processes and services.

```sh
cargo run --release             # builds target/wasm32-wasip1/release/NAME.wasm, runs it
nebulet run target/wasm32-wasip1/release/NAME.wasm   # the same, by hand
```

`cargo run` uses the runner of `.cargo/config.toml` (`nebulet run`): install the command from a
Nebulet checkout with `cargo install --path crates/nebulet`. The target is `wasm32-wasip1`
(`rust-toolchain.toml` asks rustup for it; without automatic installs, `rustup target add
wasm32-wasip1`). Programs that use threads build for `wasm32-wasip1-threads` instead;
`wasm32-wasip2` (components) does not run on Nebulet.

Off Nebulet (under `wasmtime`, or in `cargo test` on the host) every SDK call returns
`Error::NotSupported`.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo() {
        assert_eq!(package_name(Path::new("a/my-app_2")).unwrap(), "my-app_2");
        let rule = "is not a package name: letters, digits, - and _, not starting with a digit";
        assert_eq!(package_name(Path::new("2fast")).unwrap_err(), format!("`2fast` {rule}"));
        assert_eq!(package_name(Path::new("a b")).unwrap_err(), format!("`a b` {rule}"));
        assert_eq!(package_name(Path::new("..")).unwrap_err(), ".. does not end in a name");
    }

    #[test]
    fn the_sdk_comes_from_what_was_given_else_from_where_nebulet_was_built() {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let url = |text: &str| Some(text.to_string());
        let given = choose(Some("x".into()), url("g"), url("v"), "o", &checkout).unwrap();
        assert_eq!(given, Sdk::Path("x".into()));
        assert_eq!(choose(None, url("g"), url("v"), "o", &checkout).unwrap(), Sdk::Git("g".into()));
        assert_eq!(choose(None, None, url("v"), "o", &checkout).unwrap(), Sdk::Git("v".into()));
        assert_eq!(choose(None, None, url(""), "o", &checkout).unwrap(), Sdk::Git("o".into()));
        let built = choose(None, None, None, "", &checkout).unwrap();
        assert_eq!(built, Sdk::Path(checkout.canonicalize().unwrap()));
        let gone = choose(None, None, None, "", &checkout.join("gone")).unwrap_err();
        assert!(gone.starts_with("no SDK to take: pass --sdk-git URL"), "{gone}");
    }

    #[test]
    fn the_sdk_path_is_relative_when_it_can_be() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
        let sip = sip_folder(&root).unwrap();
        assert_eq!(sip, root.join("crates/sip"));
        assert_eq!(sip_folder(&sip).unwrap(), sip);
        // A new project in a folder that every checkout has (`target` may be elsewhere, where
        // `CARGO_TARGET_DIR` says).
        let project = root.join("apps/some-app");
        assert_eq!(relative_to_project(&project, &sip).unwrap(), "../../crates/sip");
        let docs = root.join("docs");
        assert_eq!(
            sip_folder(&docs).unwrap_err(),
            format!("{} is neither a Nebulet checkout nor its crates/sip folder", docs.display())
        );
    }
}
