//! The command line, spelled as `wasmtime run` and `wasmtime compile` spell theirs.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Nebulet, a microkernel whose processes are WebAssembly modules, hosted on Linux.
///
/// With no command it boots the demo system embedded in this binary: `init` starts the
/// services and tasks of the image's manifest, which talk over channels and the service
/// registry, and the command exits with init's exit code.
#[derive(Debug, Parser)]
#[command(version)]
pub(crate) struct Arguments {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Runs a `.wasm`, `.wat` or `.cwasm` file as the first process and exits with its exit
    /// code.
    ///
    /// Everything after the module goes to the program as its arguments (a `--` right after
    /// the module is dropped, so `nebulet run prog.wasm -- ARGS` works too). The program sees
    /// only the host directories given with `--dir` (as WASI preopens), and nothing outside
    /// them: `..` above one, absolute paths and symbolic links that lead out are refused.
    /// Without `--dir` it has no files at all.
    Run(RunArguments),
    /// Compiles a `.wasm` or `.wat` module ahead of time into a `.cwasm` file, which
    /// `nebulet run --allow-precompiled` runs without compiling. The file runs on this version
    /// of nebulet, on a CPU with the same features.
    Compile {
        /// The module to compile.
        module: PathBuf,
        /// The file to write; by default the module's file name with the extension `.cwasm`,
        /// in the current directory.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArguments,
    },
    /// Boots the demo system (the default).
    Demo {
        /// A manifest file to use instead of the embedded one.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Prints the root budget (what this host gives all processes) to stderr first.
        #[arg(short, long)]
        verbose: bool,
        /// Opens a control socket at PATH (mode 0600) on which `nebulet ps` lists the processes.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArguments,
    },
    /// Lists the processes of a running `nebulet run` or `nebulet demo` started with
    /// `--control PATH`: id, name, state (running, ready, blocked:KIND, exited), threads, CPU
    /// time, memory, handles, queued bytes, restarts and domain.
    Ps {
        /// The control socket of the command to ask.
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// Prints a JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A live view of `nebulet ps`'s table, refreshed every second: a terminal UI (q, Esc or
    /// Ctrl-C quits), or, when stdout is not a terminal, the table again and again until the
    /// command ends.
    Top {
        /// The control socket of the command to watch.
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// How often to refresh: a number with ns, us, ms or s.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Lists the apps of the embedded image with their sizes.
    Apps,
    /// Serves HTTP/1.1, answering each request with a fresh process of a wasm app.
    Serve(nebulet_serve::ServeArgs),
    /// Creates an app project: Cargo.toml with the SDK (`sip`) as a dependency, the
    /// wasm32-wasip1 target and `nebulet run` as `cargo run`'s runner, a `src/main.rs` that
    /// uses a channel, and a README.
    New(NewArguments),
    /// The host process of a hardware protection domain (`run --isolate`), started by nebulet
    /// itself with its socket to the parent as stdin.
    #[command(name = "domain-child", hide = true)]
    DomainChild,
    /// The zygote that forks the host processes of hardware protection domains, started by
    /// nebulet itself at its first domain with its socket to nebulet as stdin.
    #[command(name = "domain-zygote", hide = true)]
    DomainZygote,
}

/// The options of `nebulet new`.
#[derive(Debug, Args)]
pub(crate) struct NewArguments {
    /// The project's directory, to be created; its last component is the package name.
    pub(crate) path: PathBuf,
    /// Takes the SDK from this Nebulet checkout (or its `crates/sip`) as a path dependency,
    /// instead of from git.
    #[arg(long, value_name = "CHECKOUT", conflicts_with = "sdk_git")]
    pub(crate) sdk_path: Option<PathBuf>,
    /// The git repository to take the SDK from. Default: $NEBULET_SDK_GIT, else the repository
    /// the checkout this `nebulet` was built from was cloned from, else that checkout itself
    /// (a path dependency) if it is still there.
    #[arg(long, value_name = "URL")]
    pub(crate) sdk_git: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArguments {
    /// Prints the root budget (what this host gives all processes) to stderr first.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Passes an environment variable to the program: `NAME=VALUE`, or `NAME` alone for the
    /// value it has here, if any (repeatable).
    #[arg(long = "env", value_name = "NAME[=VAL]", value_parser = parse_environment)]
    pub(crate) environment: Vec<EnvironmentArgument>,
    /// Gives the program the host directory HOST_DIR, under the name GUEST_DIR (default:
    /// HOST_DIR as written), e.g. `--dir .`, `--dir data::/data` (repeatable).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]", value_parser = parse_directory)]
    pub(crate) directories: Vec<DirectoryArgument>,
    /// Gives the program a TCP socket listening on ADDRESS (`127.0.0.1:8080`, `localhost:0`),
    /// as WASI descriptor 3, the next one at 4, and so on, before the `--dir` directories (as
    /// wasmtime's former `--tcplisten`); repeatable. Port 0 takes any free port (`-v` prints
    /// it).
    #[arg(long = "listen", value_name = "ADDRESS", value_parser = parse_listen_address)]
    pub(crate) listen: Vec<std::net::SocketAddr>,
    /// Allows running a `.cwasm` file made by `nebulet compile`. Only for files made so: a
    /// `.cwasm` is machine code, which runs without the sandbox's checks.
    #[arg(long)]
    pub(crate) allow_precompiled: bool,
    /// Opens a control socket at PATH (mode 0600) on which `nebulet ps` lists the processes.
    #[arg(long, value_name = "PATH")]
    pub(crate) control: Option<PathBuf>,
    /// Runs the program in a hardware protection domain: a host process of its own, sandboxed
    /// (seccomp-bpf, Landlock, namespaces) before the module is compiled in it; see
    /// docs/domains.md. Its `--dir` directories and stdio are passed in as descriptors.
    #[arg(long)]
    pub(crate) isolate: bool,
    #[command(flatten)]
    pub(crate) cache: CacheArguments,
    /// The module to run, then the arguments to pass to it.
    #[arg(
        value_name = "WASM",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) module_and_args: Vec<OsString>,
}

/// Whether compiled modules are kept in the cache (see the README).
#[derive(Debug, Default, Args)]
pub(crate) struct CacheArguments {
    /// Neither reads nor writes the cache of compiled modules.
    #[arg(long)]
    no_cache: bool,
    /// Codegen options as wasmtime spells them; only `cache[=y|n]` is known.
    #[arg(short = 'C', long = "codegen", value_name = "KEY[=VAL]", value_parser = parse_codegen)]
    codegen: Vec<Codegen>,
}

impl CacheArguments {
    /// Whether the cache is on: unless `--no-cache` or a last `-C cache=n` turned it off.
    pub(crate) fn enabled(&self) -> bool {
        let chosen = self.codegen.iter().rev().map(|Codegen::Cache(on)| *on).next();
        !self.no_cache && chosen.unwrap_or(true)
    }
}

/// A `-C KEY[=VAL]`.
#[derive(Debug, Clone, Copy)]
enum Codegen {
    Cache(bool),
}

/// An address to listen on: an IP address and port, or a host name and port (its first
/// address).
fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addresses =
        text.to_socket_addrs().map_err(|error| format!("`{text}` is not HOST:PORT ({error})"))?;
    addresses.next().ok_or_else(|| format!("`{text}` has no address"))
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    nebulet_abi::bootstrap::parse_duration(text)
        .filter(|nanoseconds| *nanoseconds > 0)
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| {
            format!("`{text}` is not a duration above 0 (a number with ns, us, ms or s)")
        })
}

fn parse_codegen(text: &str) -> Result<Codegen, String> {
    let (key, value) = text.split_once('=').map_or((text, None), |(key, value)| (key, Some(value)));
    match (key, value) {
        ("cache", None | Some("y" | "yes" | "true")) => Ok(Codegen::Cache(true)),
        ("cache", Some("n" | "no" | "false")) => Ok(Codegen::Cache(false)),
        ("cache", Some(value)) => Err(format!("`{value}` is not y or n")),
        _ => Err(format!("unknown codegen option `{key}` (nebulet knows only `cache`)")),
    }
}

/// A `--env NAME[=VALUE]`.
#[derive(Debug, Clone)]
pub(crate) enum EnvironmentArgument {
    /// `NAME=VALUE`, as written.
    Set(String),
    /// `NAME`: the variable's value here.
    Inherit(String),
}

impl EnvironmentArgument {
    /// `NAME=VALUE`, or `None` for an inherited variable that is not set here (as wasmtime
    /// does, the program then does not have it).
    pub(crate) fn resolve(self) -> Option<String> {
        match self {
            EnvironmentArgument::Set(text) => Some(text),
            EnvironmentArgument::Inherit(name) => {
                std::env::var(&name).ok().map(|value| format!("{name}={value}"))
            }
        }
    }
}

fn parse_environment(text: &str) -> Result<EnvironmentArgument, String> {
    match text.split_once('=') {
        Some((name, _)) if !name.is_empty() => Ok(EnvironmentArgument::Set(text.to_string())),
        None if !text.is_empty() => Ok(EnvironmentArgument::Inherit(text.to_string())),
        _ => Err(format!("`{text}` is not NAME or NAME=VALUE")),
    }
}

/// A `--dir HOST_DIR[::GUEST_DIR]`.
#[derive(Debug, Clone)]
pub(crate) struct DirectoryArgument {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
}

fn parse_directory(text: &str) -> Result<DirectoryArgument, String> {
    let (host, guest) = text.split_once("::").unwrap_or((text, text));
    if host.is_empty() || guest.is_empty() {
        return Err(format!("`{text}` is not HOST_DIR or HOST_DIR::GUEST_DIR"));
    }
    Ok(DirectoryArgument { host: host.into(), guest: guest.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &[&str]) -> RunArguments {
        let arguments = Arguments::try_parse_from(["nebulet", "run"].iter().chain(line)).unwrap();
        match arguments.command {
            Some(Command::Run(run)) => run,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn everything_after_the_module_is_the_programs() {
        let parsed = run(&["--dir", ".", "prog.wasm", "-T", "4", "--dir", "x", "--", "-v"]);
        let words: Vec<_> =
            parsed.module_and_args.iter().map(|word| word.to_str().unwrap()).collect();
        assert_eq!(words, ["prog.wasm", "-T", "4", "--dir", "x", "--", "-v"]);
        assert_eq!(parsed.directories.len(), 1);
        assert!(!parsed.verbose);
        let escaped = run(&["--", "prog.wasm", "one"]);
        assert_eq!(escaped.module_and_args, ["prog.wasm", "one"]);
        let missing = Arguments::try_parse_from(["nebulet", "run"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn environment_and_directories_are_spelled_as_wasmtime_spells_them() {
        let parsed =
            run(&["--env", "A=1", "--env", "B", "--dir", "data::/data", "--dir", ".", "p"]);
        assert!(matches!(&parsed.environment[0], EnvironmentArgument::Set(text) if text == "A=1"));
        assert!(
            matches!(&parsed.environment[1], EnvironmentArgument::Inherit(name) if name == "B")
        );
        let directories: Vec<_> = parsed
            .directories
            .iter()
            .map(|directory| (directory.host.to_str().unwrap(), directory.guest.as_str()))
            .collect();
        assert_eq!(directories, [("data", "/data"), (".", ".")]);
        for (bad, why) in [
            (["--env", "=1", "p"], "`=1` is not NAME or NAME=VALUE"),
            (["--env", "", "p"], "`` is not NAME or NAME=VALUE"),
            (["--dir", "::x", "p"], "`::x` is not HOST_DIR or HOST_DIR::GUEST_DIR"),
            (["--dir", "x::", "p"], "`x::` is not HOST_DIR or HOST_DIR::GUEST_DIR"),
        ] {
            let line = ["nebulet", "run"].into_iter().chain(bad);
            let error = Arguments::try_parse_from(line).unwrap_err().to_string();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_cache_is_on_unless_turned_off() {
        assert!(run(&["p"]).cache.enabled());
        assert!(!run(&["--no-cache", "p"]).cache.enabled());
        assert!(!run(&["-C", "cache=n", "p"]).cache.enabled());
        assert!(run(&["-C", "cache=n", "-C", "cache=y", "p"]).cache.enabled());
        assert!(run(&["-C", "cache", "p"]).cache.enabled());
        let unknown = Arguments::try_parse_from(["nebulet", "run", "-C", "inlining=y", "p"]);
        let unknown = unknown.unwrap_err().to_string();
        assert!(unknown.contains("unknown codegen option `inlining`"), "{unknown}");
        let maybe = Arguments::try_parse_from(["nebulet", "run", "-C", "cache=maybe", "p"]);
        let maybe = maybe.unwrap_err().to_string();
        assert!(maybe.contains("`maybe` is not y or n"), "{maybe}");
    }
}
