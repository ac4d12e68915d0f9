//! `nebulet`: runs wasm programs, or the demo system, on the hosted kernel.

#![forbid(unsafe_code)]
use nebulet::image;

/// mimalloc rather than glibc's malloc: allocation took 12 % of a loaded `nebulet serve`'s
/// profile, part of it in glibc's arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod arguments;
mod control;
mod isolated;
mod logging;
mod modules;
mod new;
mod top;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use nebulet_hosted::{
    Capacity, Console, Emulator, EngineOptions, ExitStatus, HostDirectory, ModuleCache,
    ProcessOptions, ProcessRef, is_compiled, module_binary,
};
use nebulet_kernel::vfs::{Directory, Preopens};

use self::arguments::{Arguments, CacheArguments, Command, DirectoryArgument, RunArguments};
use self::modules::Precompiled;

/// Opens the `--dir` directories as the program's preopens.
fn preopens(directories: &[DirectoryArgument]) -> Result<Preopens, String> {
    directories
        .iter()
        .map(|DirectoryArgument { host, guest }| {
            let directory = HostDirectory::open(host)
                .map_err(|error| format!("cannot open directory {}: {error}", host.display()))?;
            Ok((guest.clone(), Arc::new(directory) as Arc<dyn Directory>))
        })
        .collect()
}

/// How the command ends: the first process's exit code, or a one-line error (exit code 1).
pub(crate) type Outcome = Result<u8, String>;

fn main() {
    let arguments = Arguments::parse();
    let verbose = match &arguments.command {
        Some(Command::Run(run)) => run.verbose,
        Some(Command::Demo { verbose, .. }) => *verbose,
        _ => false,
    };
    logging::init(verbose);
    let default = Command::Demo {
        manifest: None,
        verbose: false,
        control: None,
        cache: CacheArguments::default(),
    };
    let outcome = match arguments.command.unwrap_or(default) {
        Command::Run(arguments) => run(arguments),
        Command::Compile { module, output, cache } => compile(&module, output, &cache),
        Command::Demo { manifest, verbose, control, cache } => demo(
            manifest,
            Report::chosen(verbose),
            control.as_deref(),
            modules::cache(cache.enabled(), &[]),
        ),
        Command::Top { control, interval } => top::top(&control, interval),
        Command::Ps { control, json } => control::ps(&control, if json { "json" } else { "table" }),
        Command::Serve(arguments) => {
            let control = arguments.control.clone();
            nebulet_serve::run_with(arguments, |kernel| match &control {
                Some(path) => control::open(kernel, path),
                None => Ok(()),
            })
        }
        Command::Apps => apps(),
        Command::DomainChild => std::process::exit(nebulet_domains::child_main()),
        Command::DomainZygote => std::process::exit(nebulet_domains::zygote_main()),
        Command::New(arguments) => new::chosen_sdk(arguments.sdk_path, arguments.sdk_git)
            .and_then(|sdk| new::create(&arguments.path, &sdk))
            .map(|()| 0),
    };
    exit(outcome)
}

/// `nebulet apps`: the embedded apps with their sizes. A reader that stops early (`| head`)
/// ends the listing quietly.
fn apps() -> Outcome {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    for (name, bytes) in image::APPS {
        if let Err(error) = writeln!(stdout, "{name:<12} {:>8} bytes", bytes.len()) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(format!("cannot write the list: {error}"));
        }
    }
    Ok(0)
}

/// Ends the command. Whatever other processes still do (spin, wait for stdin, sit in a long
/// call), the host process ends here at once: nothing waits for the runtime to shut down.
fn exit(outcome: Outcome) -> ! {
    control::close();
    let code = outcome.unwrap_or_else(|message| {
        eprintln!("nebulet: {message}");
        1
    });
    std::process::exit(i32::from(code))
}

/// Waits for `process`, writes out what processes printed until then, and ends the command.
fn finish(emulator: &Emulator, process: &ProcessRef, name: &str, report: Report) -> ! {
    let status = emulator.block_on(process.wait());
    emulator.flush_console();
    // What the program wrote to its connections reaches its clients before the command ends
    // (bounded: a client that does not read does not keep it).
    nebulet_hosted::network::drain(nebulet_hosted::network::DRAIN_PATIENCE);
    exit(exit_code(name, &status, report))
}

/// How much of a trap's backtrace the command shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// The program's own frames.
    Program,
    /// Every frame (`-v`).
    Everything,
}

impl Report {
    pub(crate) fn chosen(verbose: bool) -> Report {
        if verbose { Report::Everything } else { Report::Program }
    }
}

fn emulator(cache: Option<ModuleCache>) -> Result<Emulator, String> {
    let emulator = Emulator::with_cache(Console::Stdout, EngineOptions::default(), cache)
        .map_err(|error| format!("cannot start the kernel: {error:#}"))?;
    // Processes may start children in domains of their own (docs/domains.md): re-executions
    // of this binary.
    if let Ok(executable) = std::env::current_exe() {
        let probe = std::env::var(nebulet_domains::PROBE_VARIABLE).ok();
        let launcher = nebulet_domains::Launcher::new(executable).with_probe(probe);
        emulator.enable_domains(Arc::new(launcher));
    }
    // Shown with `-v` (or RUST_LOG=info).
    {
        let Capacity { memory_bytes, mappings, linear_memories, threads, stack_bytes, .. } =
            emulator.capacity();
        tracing::info!(
            "root budget: {} MiB of memory, {mappings} mappings, {linear_memories} \
             linear memories, {threads} threads of {} KiB of stack",
            memory_bytes >> 20,
            stack_bytes >> 10
        );
    }
    Ok(emulator)
}

fn run(arguments: RunArguments) -> Outcome {
    let RunArguments {
        verbose,
        environment,
        directories,
        listen,
        allow_precompiled,
        control,
        isolate,
        cache,
        module_and_args,
    } = arguments;
    let mut words = module_and_args.into_iter();
    let file = PathBuf::from(words.next().ok_or("no module to run")?);
    let mut args: Vec<String> = words
        .map(|word| word.into_string().map_err(|word| format!("{word:?} is not UTF-8")))
        .collect::<Result<_, _>>()?;
    // nebulet's older spelling: `nebulet run prog.wasm -- ARGS`.
    if args.first().is_some_and(|first| first == "--") {
        args.remove(0);
    }
    let environment = environment.into_iter().filter_map(|variable| variable.resolve()).collect();
    // `nebulet run hello`: no such file, but an app of the embedded image has that name.
    let embedded = (!file.exists())
        .then(|| file.to_str())
        .flatten()
        .and_then(|name| image::APPS.iter().find(|(app, _)| *app == name));
    let bytes = match embedded {
        Some((_, bytes)) => bytes.to_vec(),
        None => modules::read(&file)?,
    };
    if isolate {
        let run = isolated::Run { file, args, environment, directories, listen, verbose };
        return isolated::run(run, bytes);
    }
    let preopens = preopens(&directories)?;
    let emulator = emulator(modules::cache(cache.enabled(), &directories))?;
    if let Some(path) = &control {
        control::open(emulator.kernel(), path)?;
    }
    let precompiled = if allow_precompiled { Precompiled::Allowed } else { Precompiled::Refused };
    let module = modules::load(&emulator, &file, &bytes, precompiled)?;
    let name =
        file.file_stem().map_or_else(|| "main".into(), |stem| stem.to_string_lossy().into_owned());
    let mut listeners = Vec::with_capacity(listen.len());
    for (index, address) in listen.into_iter().enumerate() {
        let (listener, bound) = emulator
            .listen(address)
            .map_err(|error| format!("cannot listen on {address}: {error}"))?;
        tracing::info!("listening on {bound} (descriptor {})", 3 + index);
        listeners.push(listener);
    }
    let options = ProcessOptions {
        name: name.clone(),
        args,
        environment,
        preopens,
        listeners,
        ..Default::default()
    };
    let process = emulator.kernel().spawn(module, options);
    finish(&emulator, &process, &name, Report::chosen(verbose))
}

/// `nebulet compile`: writes the module compiled, as `nebulet run --allow-precompiled` loads it.
fn compile(module: &Path, output: Option<PathBuf>, cache: &CacheArguments) -> Outcome {
    let bytes = modules::read(module)?;
    if is_compiled(&bytes) {
        return Err(format!("{} is compiled already", module.display()));
    }
    let binary = module_binary(&bytes, Some(module))?;
    let emulator = emulator(modules::cache(cache.enabled(), &[]))?;
    let compiled = modules::with_notice(module, || emulator.precompile(&binary))
        .map_err(|reason| format!("cannot compile {}: {reason}", module.display()))?;
    // As wasmtime does: the module's file name with `.cwasm`, in the current directory.
    let output = output.unwrap_or_else(|| {
        let name = module.file_name().map_or_else(|| "module".into(), PathBuf::from);
        name.with_extension("cwasm")
    });
    std::fs::write(&output, compiled)
        .map_err(|error| format!("cannot write {}: {error}", output.display()))?;
    Ok(0)
}

fn demo(
    manifest: Option<PathBuf>,
    report: Report,
    control: Option<&Path>,
    cache: Option<ModuleCache>,
) -> Outcome {
    let manifest = match manifest {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        None => image::MANIFEST.to_string(),
    };
    let emulator = emulator(cache)?;
    if let Some(path) = control {
        control::open(emulator.kernel(), path)?;
    }
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
    eprintln!(
        "nebulet: booting the demo system on a Nebulet kernel hosted in this Linux process. Every \
         line below is printed by a wasm process: init starts the apps of the manifest (`nebulet \
         apps` lists them), which talk over channels."
    );
    let process = emulator
        .kernel()
        .boot(init, &manifest, apps)
        .map_err(|error| format!("cannot boot the image: {error}"))?;
    finish(&emulator, &process, "init", report)
}

/// The command's exit code for how the first process ended; prints why if it did not exit.
pub(crate) fn exit_code(name: &str, status: &ExitStatus, report: Report) -> Outcome {
    let message = status.message.as_deref().map(|message| match report {
        Report::Everything => message.to_string(),
        Report::Program => modules::program_frames(message),
    });
    match (&message, status.reason) {
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
