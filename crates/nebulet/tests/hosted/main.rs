//! The hosted system's integration tests: real wasm processes on the real kernel.
//!
//! Test programs come from two places: small WAT modules written inline, for exact control of
//! instructions and pointers; and Rust programs in `apps/` and `apps/tests/`, built for
//! wasm32-wasip1 by `crates/nebulet/build.rs`, which exercise every call through the SDK.

mod cache;
mod cli;
mod control;
mod domains;
mod fuzz;
mod hostile;
mod isolated_children;
mod isolation;
mod limits;
mod network;
mod programs;
mod scale;
mod serve;
mod shutdown;
mod system;
mod threads;
mod wasi;
mod zygote;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nebulet_hosted::{Console, Emulator, ExitStatus, ProcessOptions};

/// How long any single wait in these tests may take before the test fails (not a benchmark:
/// only a bound that turns a hang into a failure).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The `nebulet` command, keeping compiled modules in a directory of this test run (never the
/// user's cache).
pub fn nebulet_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nebulet"));
    let directory = std::env::temp_dir().join(format!("nebulet-test-cache-{}", std::process::id()));
    command.env(nebulet_hosted::CACHE_DIRECTORY_VARIABLE, directory);
    // The tests expect the default log level: a RUST_LOG of the caller's must not change it.
    command.env_remove("RUST_LOG");
    command
}

/// A kernel whose console is captured.
#[derive(Debug)]
pub struct System {
    pub emulator: Emulator,
    console: Arc<Mutex<Vec<u8>>>,
}

impl Default for System {
    fn default() -> Self {
        Self::new()
    }
}

impl System {
    pub fn new() -> Self {
        let console = Arc::new(Mutex::new(Vec::new()));
        let emulator = Emulator::new(Console::Buffer(console.clone())).expect("the kernel starts");
        Self { emulator, console }
    }

    /// A system whose engine takes instances from wasmtime's pooling allocator.
    pub fn pooled(pooling: nebulet_hosted::wasmtime::PoolingAllocationConfig) -> Self {
        let console = Arc::new(Mutex::new(Vec::new()));
        let options = nebulet_hosted::EngineOptions::default();
        let emulator = Emulator::with_pooling(Console::Buffer(console.clone()), options, pooling)
            .expect("the kernel starts");
        Self { emulator, console }
    }

    /// Compiles WAT text or wasm bytes, panicking with the reason if they are invalid.
    pub fn module(&self, source: impl AsRef<[u8]>) -> nebulet_hosted::wasmtime::Module {
        self.emulator
            .compile(source.as_ref())
            .unwrap_or_else(|reason| panic!("invalid test module: {reason}"))
    }

    /// The app or test program `name` built from `apps/`.
    pub fn program(&self, name: &str) -> nebulet_hosted::wasmtime::Module {
        self.module(nebulet::image::find(name).unwrap_or_else(|| panic!("no program {name}")))
    }

    /// Starts a process and waits (at most [`PATIENCE`]) for its end.
    pub fn run(
        &self,
        module: nebulet_hosted::wasmtime::Module,
        name: &str,
        args: &[&str],
    ) -> ExitStatus {
        let options = ProcessOptions {
            name: name.to_string(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            ..Default::default()
        };
        self.run_with(module, options)
    }

    /// Starts a process with all its options (environment, preopened directories) and waits
    /// (at most [`PATIENCE`]) for its end.
    pub fn run_with(
        &self,
        module: nebulet_hosted::wasmtime::Module,
        options: ProcessOptions,
    ) -> ExitStatus {
        let process = self.emulator.kernel().spawn(module, options);
        self.wait(&process)
    }

    pub fn wait(&self, process: &nebulet_hosted::ProcessRef) -> ExitStatus {
        self.emulator
            .block_on(async { tokio::time::timeout(PATIENCE, process.wait()).await })
            .unwrap_or_else(|_| {
                panic!("process {} did not end within {PATIENCE:?}", process.name())
            })
    }

    /// Runs a test program with arguments and asserts it exits 0, showing its output if not.
    pub fn pass(&self, name: &str, args: &[&str]) {
        let status = self.run(self.program(name), name, args);
        assert_eq!(
            (status.code, status.reason),
            (0, nebulet_abi::ExitReason::Exited),
            "{name} {args:?} failed: {:?}\n--- console ---\n{}",
            status.message,
            self.console()
        );
    }

    /// Boots the demo image with a manifest and waits for init to end.
    pub fn boot(&self, manifest: &str) -> ExitStatus {
        let mut init = None;
        let apps = nebulet::image::APPS
            .iter()
            .map(|(name, bytes)| {
                let module = self.module(bytes);
                if *name == "init" {
                    init = Some(module.clone());
                }
                (name.to_string(), module)
            })
            .collect();
        let process = self
            .emulator
            .kernel()
            .boot(init.expect("the image has init"), manifest, apps)
            .expect("boot");
        self.wait(&process)
    }

    /// How many bytes the system has printed so far (without copying them).
    pub fn console_bytes(&self) -> usize {
        self.console.lock().unwrap().len()
    }

    /// Everything the system has printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&self.console.lock().unwrap()).into_owned()
    }
}
