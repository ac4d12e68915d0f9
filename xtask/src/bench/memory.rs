//! Memory per idle process: how much the host process's resident set (`VmRSS` of
//! `/proc/self/status`) grows per Nebulet process blocked in a wait, against how much it grows
//! per Linux thread blocked on a condition variable.
//!
//! Each count runs alone in a fresh process (`xtask bench-memory SYSTEM COUNT`), so that memory
//! freed by an earlier measurement does not make a later one look cheaper. One process (or
//! thread) is started before the baseline, so that what all of them share (the runtime, the
//! compiled module) is not counted. Nebulet processes are started in batches, and the
//! measurement stops at the first one that fails to start (typically when the host runs out of
//! mappings: `vm.max_map_count`); the count reached is reported. Also recorded: the growth of
//! the host's page tables (`VmPTE`, not part of RSS) and, for Linux, of the kernel stacks of
//! the whole machine (`KernelStack` of `/proc/meminfo`, not part of any RSS).

use std::future::Future;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use nebulet_hosted::{Console, Emulator, EngineOptions, ProcessOptions, wasmtime};
use serde_json::{Value, json};

use super::{Settings, describe_options, progress};

/// An idle process: one page of memory, which it touches, one byte to the console to say it
/// got there, then a sleep that never ends. No data segment, so no copy-on-write image mapping.
/// (The memory is exported as `memory`: the kernel reads call arguments from that one.)
const IDLE_MODULE: &str = r#"(module
  (import "nebulet" "debug_write" (func $debug_write (param i32 i32) (result i32)))
  (import "nebulet" "nanosleep" (func $nanosleep (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 0) (i32.const 46))
    (drop (call $debug_write (i32.const 0) (i32.const 1)))
    (drop (call $nanosleep (i64.const 0x7fffffffffffffff)))))"#;

/// Processes started before waiting for them to block.
const BATCH: u64 = 1_000;
/// How long one batch may take to block before the measurement gives up.
const BATCH_PATIENCE: Duration = Duration::from_secs(120);

/// One measurement: `count` idle processes or threads of one system.
#[derive(Debug, Clone)]
pub struct IdleRun {
    /// `nebulet-default`, `nebulet-dense`, `wasmtime-dense` or `linux-threads`.
    pub system: String,
    pub configuration: String,
    pub requested: u64,
    /// How many were idle when memory was read.
    pub reached: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub page_tables_kib: i64,
    /// Growth of the host's mappings (lines of `/proc/self/maps`; Linux allows
    /// `vm.max_map_count` of them); `None` if they could not be read.
    pub mappings: Option<i64>,
    /// Machine-wide, so other work on the machine shows in it too.
    pub kernel_stacks_kib: i64,
    /// Time to start them all and see them idle.
    pub seconds: f64,
    /// Why fewer than `requested` were reached.
    pub failure: Option<String>,
}

impl IdleRun {
    /// Resident KiB per idle process or thread.
    pub fn kib_each(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.reached.max(1) as f64
    }

    /// Microseconds to start one and see it idle.
    pub fn start_microseconds(&self) -> f64 {
        self.seconds * 1e6 / self.reached.max(1) as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "system": self.system,
            "configuration": self.configuration,
            "requested": self.requested,
            "reached": self.reached,
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "rss_kib_each": self.kib_each(),
            "page_tables_kib": self.page_tables_kib,
            "mappings": self.mappings,
            "kernel_stacks_kib": self.kernel_stacks_kib,
            "seconds": self.seconds,
            "start_microseconds_each": self.start_microseconds(),
            "failure": self.failure,
        })
    }

    fn from_json(value: &Value) -> Option<IdleRun> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
        let number = |key: &str| value.get(key)?.as_u64();
        let signed = |key: &str| value.get(key)?.as_i64();
        Some(IdleRun {
            system: text("system")?,
            configuration: text("configuration")?,
            requested: number("requested")?,
            reached: number("reached")?,
            rss_before_kib: number("rss_before_kib")?,
            rss_after_kib: number("rss_after_kib")?,
            page_tables_kib: signed("page_tables_kib")?,
            mappings: signed("mappings"),
            kernel_stacks_kib: signed("kernel_stacks_kib")?,
            seconds: value.get("seconds")?.as_f64()?,
            failure: text("failure"),
        })
    }
}

/// Every memory measurement of the run, each in a fresh process.
pub fn measure(settings: &Settings) -> Result<Vec<IdleRun>, String> {
    let mut runs = Vec::new();
    for &count in &settings.idle_processes {
        for system in ["nebulet-default", "nebulet-dense"] {
            runs.push(in_fresh_process(system, count)?);
        }
    }
    // wasmtime alone, the floor under Nebulet's dense row, at one count: per process it does
    // not change with the count.
    if let Some(&count) = settings.idle_processes.iter().filter(|&&count| count <= 100_000).max() {
        runs.push(in_fresh_process("wasmtime-dense", count)?);
    }
    for &count in &settings.idle_threads {
        runs.push(in_fresh_process("linux-threads", count)?);
    }
    Ok(runs)
}

fn in_fresh_process(system: &str, count: u64) -> Result<IdleRun, String> {
    progress(&format!("  {system}: {count} idle"));
    let program = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    let output = Command::new(program)
        .args(["bench-memory", system, &count.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot start bench-memory: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let run = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .and_then(|value| IdleRun::from_json(&value));
    let run = match run {
        Some(run) => run,
        // It died (an abort when the host ran out of something): no numbers, only how.
        None => IdleRun {
            system: system.into(),
            configuration: configuration(system),
            requested: count,
            reached: 0,
            rss_before_kib: 0,
            rss_after_kib: 0,
            page_tables_kib: 0,
            mappings: None,
            kernel_stacks_kib: 0,
            seconds: 0.0,
            failure: Some(format!("the measuring process ended with {}", output.status)),
        },
    };
    progress(&format!(
        "  {system}: {} of {count} idle, {:.1} KiB each{}",
        run.reached,
        run.kib_each(),
        run.failure.as_ref().map(|failure| format!(" (stopped: {failure})")).unwrap_or_default()
    ));
    Ok(run)
}

fn configuration(system: &str) -> String {
    match system {
        "nebulet-default" => describe_options(&EngineOptions::default()),
        "nebulet-dense" | "wasmtime-dense" => describe_options(&EngineOptions::dense()),
        _ => "std threads, default 2 MiB stacks, blocked on one Condvar".into(),
    }
}

/// `xtask bench-memory SYSTEM COUNT`: measures, prints one JSON line, and exits at once (the
/// idle processes and threads end with the host process instead of one by one).
pub fn measure_here(system: &str, count: u64) -> Result<(), String> {
    let run = match system {
        "nebulet-default" => nebulet_idle(system, EngineOptions::default(), count)?,
        "nebulet-dense" => nebulet_idle(system, EngineOptions::dense(), count)?,
        "wasmtime-dense" => wasmtime_idle(system, EngineOptions::dense(), count)?,
        "linux-threads" => linux_idle(count)?,
        other => return Err(format!("unknown system `{other}`")),
    };
    println!("{}", run.to_json());
    std::io::Write::flush(&mut std::io::stdout()).map_err(|error| error.to_string())?;
    std::process::exit(0);
}

/// Memory figures of this process (and the machine's kernel stacks), in KiB.
#[derive(Debug, Clone, Copy)]
struct Usage {
    rss: u64,
    page_tables: u64,
    kernel_stacks: u64,
    mappings: Option<i64>,
}

fn usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Usage {
        rss: kib_field(&status, "VmRSS"),
        page_tables: kib_field(&status, "VmPTE"),
        kernel_stacks: kib_field(&meminfo, "KernelStack"),
        // Reading it can fail when the process is out of mappings: then unknown.
        mappings: std::fs::read_to_string("/proc/self/maps")
            .ok()
            .map(|maps| maps.lines().count() as i64),
    }
}

/// The value of a `Name:   1234 kB` line.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn finish(
    system: &str,
    configuration: String,
    requested: u64,
    reached: u64,
    before: Usage,
    started: Instant,
    failure: Option<String>,
) -> IdleRun {
    let seconds = started.elapsed().as_secs_f64();
    // Let anything deferred (freed stacks, the allocator's trimming) settle.
    thread::sleep(Duration::from_millis(300));
    let after = usage();
    IdleRun {
        system: system.into(),
        configuration,
        requested,
        reached,
        rss_before_kib: before.rss,
        rss_after_kib: after.rss,
        page_tables_kib: after.page_tables as i64 - before.page_tables as i64,
        mappings: after.mappings.zip(before.mappings).map(|(after, before)| after - before),
        kernel_stacks_kib: after.kernel_stacks as i64 - before.kernel_stacks as i64,
        seconds,
        failure,
    }
}

fn nebulet_idle(system: &str, options: EngineOptions, count: u64) -> Result<IdleRun, String> {
    let configuration = describe_options(&options);
    // Each idle process writes one byte here: its length is how many are idle.
    let console = Arc::new(Mutex::new(Vec::with_capacity(count as usize + 1)));
    let emulator = Emulator::with_options(Console::Buffer(console.clone()), options)
        .map_err(|error| format!("the hosted kernel does not start: {error:#}"))?;
    let module = emulator.compile(IDLE_MODULE.as_bytes())?;
    let kernel = emulator.kernel();
    let idle = || console.lock().unwrap_or_else(PoisonError::into_inner).len() as u64;
    let options = || ProcessOptions { name: "idle".into(), ..Default::default() };

    let first = kernel.spawn(module.clone(), options());
    let patience = Instant::now() + Duration::from_secs(10);
    while idle() < 1 {
        if let Some(status) = first.exit_status() {
            return Err(format!("the first idle process ended: {status:?}"));
        }
        if Instant::now() > patience {
            return Err("the first idle process did not block".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(100));
    let before = usage();
    let started = Instant::now();
    let mut spawned = 0;
    let mut failure = None;
    while spawned < count && failure.is_none() {
        let batch: Vec<_> = (0..BATCH.min(count - spawned))
            .map(|_| kernel.spawn(module.clone(), options()))
            .collect();
        spawned += batch.len() as u64;
        let patience = Instant::now() + BATCH_PATIENCE;
        loop {
            let ended: Vec<_> = batch.iter().filter_map(|process| process.exit_status()).collect();
            if idle() - 1 + ended.len() as u64 >= spawned {
                if let Some(status) = ended.first() {
                    failure = Some(format!(
                        "{} of the last {} did not start: {}",
                        ended.len(),
                        batch.len(),
                        status.message.as_deref().unwrap_or("no message")
                    ));
                }
                break;
            }
            if Instant::now() > patience {
                failure = Some(format!("a batch did not block within {BATCH_PATIENCE:?}"));
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        if spawned % 10_000 == 0 || failure.is_some() {
            progress(&format!(
                "    {system}: {} idle processes, RSS {} MiB",
                idle() - 1,
                usage().rss >> 10
            ));
        }
    }
    let reached = idle() - 1;
    let run = finish(system, configuration, count, reached, before, started, failure);
    // Not dropped: tearing down 100,000 processes one by one takes long; the process exits.
    std::mem::forget(emulator);
    Ok(run)
}

/// An idle instance for wasmtime alone: it touches its page, then awaits a host future that
/// never ends (Nebulet's idle process also writes a byte to its console first).
const IDLE_FLOOR_MODULE: &str = r#"(module
  (import "floor" "sleep" (func $sleep))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 0) (i32.const 46))
    (call $sleep)))"#;

type Idle = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// `count` stores of wasmtime alone (Nebulet's engine configuration, none of its kernel), each
/// suspended in a host call: the floor under Nebulet's idle processes.
fn wasmtime_idle(system: &str, options: EngineOptions, count: u64) -> Result<IdleRun, String> {
    let failed = |error: wasmtime::Error| format!("{error:#}");
    let configuration = describe_options(&options);
    let engine = wasmtime::Engine::new(&options.config()).map_err(failed)?;
    let module = wasmtime::Module::new(&engine, IDLE_FLOOR_MODULE).map_err(failed)?;
    let mut linker = wasmtime::Linker::<()>::new(&engine);
    linker
        .func_wrap_async("floor", "sleep", |_caller, (): ()| {
            Box::new(async { std::future::pending::<wasmtime::Result<()>>().await })
        })
        .map_err(failed)?;
    let prepared = linker.instantiate_pre(&module).map_err(failed)?;
    let mut context = Context::from_waker(Waker::noop());
    // Polled once: it runs until its `sleep`, and stays suspended there.
    let mut start_one = || -> Result<Idle, String> {
        let (engine, prepared) = (engine.clone(), prepared.clone());
        let mut idle: Idle = Box::pin(async move {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = prepared.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        });
        match idle.as_mut().poll(&mut context) {
            Poll::Pending => Ok(idle),
            Poll::Ready(result) => Err(format!("it did not stay idle: {result:?}")),
        }
    };
    let mut idle = vec![start_one()?];
    thread::sleep(Duration::from_millis(100));
    let before = usage();
    let started = Instant::now();
    let mut failure = None;
    while (idle.len() as u64) < count + 1 {
        match start_one() {
            Ok(one) => idle.push(one),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let reached = idle.len() as u64 - 1;
    let run = finish(system, configuration, count, reached, before, started, failure);
    // Not dropped: the process exits.
    std::mem::forget(idle);
    Ok(run)
}

fn linux_idle(count: u64) -> Result<IdleRun, String> {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let waiting = Arc::new(AtomicU64::new(0));
    let start_one = || {
        let (gate, waiting) = (gate.clone(), waiting.clone());
        thread::Builder::new().spawn(move || {
            let (open, opened) = &*gate;
            let mut guard = open.lock().unwrap_or_else(PoisonError::into_inner);
            waiting.fetch_add(1, Ordering::SeqCst);
            while !*guard {
                guard = opened.wait(guard).unwrap_or_else(PoisonError::into_inner);
            }
        })
    };
    // `waiting` counts threads that hold the lock on their way into the wait; the lock is
    // free again only once they wait, so taking it after the count shows they all are idle.
    let all_waiting = |expected: u64| -> Result<(), String> {
        let patience = Instant::now() + BATCH_PATIENCE;
        while waiting.load(Ordering::SeqCst) < expected {
            if Instant::now() > patience {
                return Err(format!("threads did not block within {BATCH_PATIENCE:?}"));
            }
            thread::sleep(Duration::from_millis(1));
        }
        drop(gate.0.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(())
    };
    start_one().map_err(|error| format!("cannot start a thread: {error}"))?;
    all_waiting(1)?;
    thread::sleep(Duration::from_millis(100));
    let before = usage();
    let started = Instant::now();
    let mut spawned = 0;
    let mut failure = None;
    while spawned < count {
        match start_one() {
            // Detached: the threads end with the process.
            Ok(_) => spawned += 1,
            Err(error) => {
                failure = Some(format!("thread {} did not start: {error}", spawned + 1));
                break;
            }
        }
        if spawned % 10_000 == 0 {
            progress(&format!("    linux-threads: {spawned} threads"));
        }
    }
    all_waiting(spawned + 1)?;
    let configuration = configuration("linux-threads");
    Ok(finish("linux-threads", configuration, count, spawned, before, started, failure))
}
