//! `nebulet`: runs wasm programs, or the demo system, on the hosted kernel.

#![forbid(unsafe_code)]
use nebulet::image;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use nebulet_hosted::{Console, Emulator, ExitStatus, HostDirectory, ProcessOptions};
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
        /// The module to run.
        file: PathBuf,
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
    },
    /// Lists the apps of the embedded image with their sizes.
    Apps,
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

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    let result = match arguments.command.unwrap_or(Command::Demo { manifest: None }) {
        Command::Run { file, environment, directories, args } => {
            run(&file, environment, directories, args)
        }
        Command::Demo { manifest } => demo(manifest),
        Command::Apps => {
            for (name, bytes) in image::APPS {
                println!("{name:<12} {:>8} bytes", bytes.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|message| {
        eprintln!("nebulet: {message}");
        ExitCode::FAILURE
    })
}

fn emulator() -> Result<Emulator, String> {
    Emulator::new(Console::Stdout).map_err(|error| format!("cannot start the kernel: {error:#}"))
}

fn run(
    file: &PathBuf,
    environment: Vec<String>,
    directories: Vec<DirectoryArgument>,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    let bytes =
        std::fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let preopens = preopens(directories)?;
    let emulator = emulator()?;
    let module = emulator
        .compile(&bytes)
        .map_err(|reason| format!("cannot load {}: {reason}", file.display()))?;
    let name =
        file.file_stem().map_or_else(|| "main".into(), |stem| stem.to_string_lossy().into_owned());
    let status =
        emulator.run(module, ProcessOptions { name: name.clone(), args, environment, preopens });
    exit_code(&name, &status)
}

fn demo(manifest: Option<PathBuf>) -> Result<ExitCode, String> {
    let manifest = match manifest {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        None => image::MANIFEST.to_string(),
    };
    let emulator = emulator()?;
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
    let status = emulator.block_on(process.wait());
    exit_code("init", &status)
}

/// The command's exit code for how the first process ended; prints why if it did not exit.
fn exit_code(name: &str, status: &ExitStatus) -> Result<ExitCode, String> {
    match (&status.message, status.reason) {
        (_, nebulet_abi::ExitReason::Exited) => match u8::try_from(status.code) {
            Ok(code) => Ok(ExitCode::from(code)),
            Err(_) => {
                Err(format!("process `{name}` exited with code {}, outside 0..=255", status.code))
            }
        },
        (Some(message), _) => Err(format!("process `{name}` {message}")),
        (None, reason) => Err(format!("process `{name}` ended: {}", reason.word())),
    }
}
