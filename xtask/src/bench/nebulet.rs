//! The Nebulet side: a hosted kernel whose console is captured, running the wasm programs of
//! the image (`nebulet::image`) and reading the lines they print.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use nebulet_abi::ExitReason;
use nebulet_hosted::{Console, Emulator, EngineOptions, ExitStatus, ProcessOptions, wasmtime};

/// A hosted kernel with one engine configuration, and the modules compiled for it.
pub struct Nebulet {
    emulator: Emulator,
    options: EngineOptions,
    console: Arc<Mutex<Vec<u8>>>,
    modules: Mutex<HashMap<&'static str, wasmtime::Module>>,
}

impl Nebulet {
    pub fn new(options: EngineOptions) -> Result<Self, String> {
        let console = Arc::new(Mutex::new(Vec::new()));
        let emulator = Emulator::with_options(Console::Buffer(console.clone()), options.clone())
            .map_err(|error| format!("the hosted kernel does not start: {error:#}"))?;
        Ok(Self { emulator, options, console, modules: Mutex::new(HashMap::new()) })
    }

    /// The hosted kernel (its runtime runs the domains' bridges).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The engine configuration.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The app or test program `name` of the image, compiled once.
    pub fn module(&self, name: &'static str) -> Result<wasmtime::Module, String> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(name) {
            return Ok(module.clone());
        }
        let bytes = nebulet::image::find(name).ok_or(format!("no program {name} in the image"))?;
        let module = self.emulator.compile(bytes).map_err(|error| format!("{name}: {error}"))?;
        modules.insert(name, module.clone());
        Ok(module)
    }

    /// Runs `program ARGUMENTS` to its end; what it printed, or an error if it did not exit 0.
    pub fn run(&self, program: &'static str, arguments: &[String]) -> Result<String, String> {
        let module = self.module(program)?;
        self.take_output();
        let options =
            ProcessOptions { name: program.into(), args: arguments.to_vec(), ..Default::default() };
        let status = self.emulator.run(module, options);
        let output = self.take_output();
        check(&status, &format!("{program} {}", arguments.join(" ")), output)
    }

    /// Boots `program` as the first process, with `manifest` and the `apps` as its image (the
    /// way `init` is started); what it printed, or an error if it did not exit 0.
    pub fn boot(
        &self,
        program: &'static str,
        manifest: &str,
        apps: &[&'static str],
    ) -> Result<String, String> {
        let module = self.module(program)?;
        let apps = apps
            .iter()
            .map(|name| Ok((name.to_string(), self.module(name)?)))
            .collect::<Result<Vec<_>, String>>()?;
        self.take_output();
        let process = self
            .emulator
            .kernel()
            .boot(module, manifest, apps)
            .map_err(|error| format!("booting {program}: {error:?}"))?;
        let status = self.emulator.block_on(process.wait());
        let output = self.take_output();
        check(&status, &format!("{program} (booted with `{manifest}`)"), output)
    }

    /// Runs a case of the `bench` program (`apps/tests/bench`): `(operations, nanoseconds)`.
    pub fn bench_case(&self, words: &[&str]) -> Result<(u64, f64), String> {
        let arguments: Vec<String> = words.iter().map(|word| word.to_string()).collect();
        let output = self.run("bench", &arguments)?;
        parse_operations(&output, words[0])
    }

    fn take_output(&self) -> String {
        let mut console = self.console.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&console).into_owned();
        console.clear();
        text
    }
}

fn check(status: &ExitStatus, what: &str, output: String) -> Result<String, String> {
    if status.reason == ExitReason::Exited && status.code == 0 {
        Ok(output)
    } else {
        Err(format!(
            "{what} ended: {:?} (code {}) {}\n{output}",
            status.reason,
            status.code,
            status.message.as_deref().unwrap_or("")
        ))
    }
}

/// Reads the `bench` program's line `CASE: N ops in T ns`.
pub fn parse_operations(output: &str, case: &str) -> Result<(u64, f64), String> {
    let prefix = format!("{case}: ");
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .ok_or(format!("no `{prefix}` line in the output: {output}"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [operations, "ops", "in", nanoseconds, "ns"] => Ok((
            operations.parse().map_err(|_| format!("bad count in `{line}`"))?,
            nanoseconds.parse().map_err(|_| format!("bad duration in `{line}`"))?,
        )),
        _ => Err(format!("unexpected line `{prefix}{line}`")),
    }
}
