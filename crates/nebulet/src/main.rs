//! `nebulet`: runs wasm programs, or the demo system, on the hosted kernel.

#![forbid(unsafe_code)]
use nebulet::image;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use nebulet_hosted::{
    Capacity, Console, Emulator, ExitStatus, HostDirectory, ProcessOptions, ProcessRef,
    module_binary,
};
use nebulet_kernel::vfs::{Directory, Preopens};

/// Nebulet, a microkernel whose processes are WebAssembly modules, hosted on Linux.
///
/// With no command it boots the demo system embedded in this binary: `init` starts the
/// services and tasks of the image's manifest, which talk over channels and the service
/// registry, and the command exits with init's exit code.
#[derive(Debug, Parser)]
#[command(version)]
struct Arguments {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a `.wasm` or `.wat` file as the first process and exits with its exit code.
    ///
    /// The program sees only the host directories given with `--dir` (as WASI preopens), and
    /// nothing outside them: `..` above one, absolute paths and symbolic links that lead out
    /// are refused. Without `--dir` it has no files at all.
    Run {
        /// The module to run (at most 256 MiB).
        file: PathBuf,
        /// Prints the root budget (what this host gives all processes) to stderr first.
        #[arg(short, long)]
        verbose: bool,
        /// Sets an environment variable of the program (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_environment)]
        environment: Vec<String>,
        /// Gives the program the host directory HOST, under the name GUEST (default: HOST as
        /// written), e.g. `--dir .`, `--dir data::/data` (repeatable).
        #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_directory)]
        directories: Vec<DirectoryArgument>,
        /// Arguments for the program (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boots the demo system (the default).
    Demo {
        /// A manifest file to use instead of the embedded one.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Prints the root budget (what this host gives all processes) to stderr first.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Lists the apps of the embedded image with their sizes.
    Apps,
    /// Serves HTTP/1.1, answering each request with a fresh process of a wasm app.
    Serve(nebulet_serve::ServeArgs),
}

fn parse_environment(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(text.to_string()),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// A `--dir HOST[::GUEST]`.
#[derive(Debug, Clone)]
struct DirectoryArgument {
    host: PathBuf,
    guest: String,
}

fn parse_directory(text: &str) -> Result<DirectoryArgument, String> {
    let (host, guest) = text.split_once("::").unwrap_or((text, text));
    if host.is_empty() || guest.is_empty() {
        return Err(format!("`{text}` is not HOST or HOST::GUEST"));
    }
    Ok(DirectoryArgument { host: host.into(), guest: guest.into() })
}

/// Opens the `--dir` directories as the program's preopens.
fn preopens(directories: Vec<DirectoryArgument>) -> Result<Preopens, String> {
    directories
        .into_iter()
        .map(|DirectoryArgument { host, guest }| {
            let directory = HostDirectory::open(&host)
                .map_err(|error| format!("cannot open directory {}: {error}", host.display()))?;
            Ok((guest, Arc::new(directory) as Arc<dyn Directory>))
        })
        .collect()
}

/// The largest module file `nebulet run` reads.
const MAX_MODULE_BYTES: u64 = 256 << 20;

/// How the command ends: the first process's exit code, or a one-line error (exit code 1).
type Outcome = Result<u8, String>;

fn main() {
    let arguments = Arguments::parse();
    let outcome =
        match arguments.command.unwrap_or(Command::Demo { manifest: None, verbose: false }) {
            Command::Run { file, verbose, environment, directories, args } => {
                run(&file, Report::chosen(verbose), environment, directories, args)
            }
            Command::Demo { manifest, verbose } => demo(manifest, Report::chosen(verbose)),
            Command::Serve(arguments) => nebulet_serve::run(arguments),
            Command::Apps => {
                for (name, bytes) in image::APPS {
                    println!("{name:<12} {:>8} bytes", bytes.len());
                }
                Ok(0)
            }
        };
    exit(outcome)
}

/// Ends the command. Whatever other processes still do (spin, wait for stdin, sit in a long
/// call), the host process ends here at once: nothing waits for the runtime to shut down.
fn exit(outcome: Outcome) -> ! {
    let code = outcome.unwrap_or_else(|message| {
        eprintln!("nebulet: {message}");
        1
    });
    std::process::exit(i32::from(code))
}

/// Waits for `process`, writes out what processes printed until then, and ends the command.
fn finish(emulator: &Emulator, process: &ProcessRef, name: &str) -> ! {
    let status = emulator.block_on(process.wait());
    emulator.flush_console();
    exit(exit_code(name, &status))
}

/// What the command prints besides the programs' output and its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Nothing,
    /// The root budget, first (`-v`).
    Budget,
}

impl Report {
    fn chosen(verbose: bool) -> Report {
        if verbose { Report::Budget } else { Report::Nothing }
    }
}

fn emulator(report: Report) -> Result<Emulator, String> {
    let emulator = Emulator::new(Console::Stdout)
        .map_err(|error| format!("cannot start the kernel: {error:#}"))?;
    if report == Report::Budget {
        let Capacity { memory_bytes, mappings, linear_memories, threads, stack_bytes } =
            emulator.capacity();
        eprintln!(
            "nebulet: root budget: {} MiB of memory, {mappings} mappings, {linear_memories} \
             linear memories, {threads} threads of {} KiB of stack",
            memory_bytes >> 20,
            stack_bytes >> 10
        );
    }
    Ok(emulator)
}

/// The module file's bytes: at most [`MAX_MODULE_BYTES`] (a device or a pipe without end is
/// refused once it passes it), as a wasm binary (wat text is parsed).
fn read_module(file: &Path) -> Result<Vec<u8>, String> {
    let cannot_read = |error: std::io::Error| format!("cannot read {}: {error}", file.display());
    let too_large = || format!("{} is larger than {} MiB", file.display(), MAX_MODULE_BYTES >> 20);
    let opened = std::fs::File::open(file).map_err(cannot_read)?;
    if opened.metadata().map_err(cannot_read)?.len() > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    opened.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    Ok(module_binary(&bytes, Some(file))?.into_owned())
}

fn run(
    file: &Path,
    report: Report,
    environment: Vec<String>,
    directories: Vec<DirectoryArgument>,
    args: Vec<String>,
) -> Outcome {
    let bytes = read_module(file)?;
    let preopens = preopens(directories)?;
    let emulator = emulator(report)?;
    let module = emulator
        .compile(&bytes)
        .map_err(|reason| format!("cannot load {}: {reason}", file.display()))?;
    let name =
        file.file_stem().map_or_else(|| "main".into(), |stem| stem.to_string_lossy().into_owned());
    let options = ProcessOptions { name: name.clone(), args, environment, preopens };
    let process = emulator.kernel().spawn(module, options);
    finish(&emulator, &process, &name)
}

fn demo(manifest: Option<PathBuf>, report: Report) -> Outcome {
    let manifest = match manifest {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        None => image::MANIFEST.to_string(),
    };
    let emulator = emulator(report)?;
    let mut init = None;
    let mut apps = Vec::new();
    for (name, bytes) in image::APPS {
        let module = emulator
            .compile(bytes)
            .map_err(|reason| format!("cannot load app {name}: {reason}"))?;
        if *name == "init" {
            init = Some(module.clone());
        }
        apps.push((name.to_string(), module));
    }
    let init = init.ok_or("the image has no init app")?;
    let process = emulator
        .kernel()
        .boot(init, &manifest, apps)
        .map_err(|error| format!("cannot boot the image: {error}"))?;
    finish(&emulator, &process, "init")
}

/// The command's exit code for how the first process ended; prints why if it did not exit.
fn exit_code(name: &str, status: &ExitStatus) -> Outcome {
    match (&status.message, status.reason) {
        (_, nebulet_abi::ExitReason::Exited) => match u8::try_from(status.code) {
            Ok(code) => Ok(code),
            Err(_) => {
                Err(format!("process `{name}` exited with code {}, outside 0..=255", status.code))
            }
        },
        (Some(message), _) => Err(format!("process `{name}` {message}")),
        (None, reason) => Err(format!("process `{name}` ended: {}", reason.word())),
    }
}
