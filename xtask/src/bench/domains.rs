//! Hardware protection domains (`crates/domains`): an isolated process's create+start+exit, a
//! message round trip across a domain's boundary, and compute inside a domain, each against its
//! baseline. A domain is a re-execution of the release `nebulet` binary beside this one.

use std::future::poll_fn;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nebulet_domains::{Domain, DomainOptions, Launch};
use nebulet_hosted::{ChannelEnd, CrossingMessage};

use super::nebulet::{Nebulet, parse_operations};
use super::{Comparison, Goal, Settings, Side};

/// A module of one page whose `_start` returns at once.
const TINY: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Echoes every message on its bootstrap channel until the peer closes (the domain tests' echo).
const ECHO: &str = include_str!("../../../apps/tests/echo.wat");

/// What a domain is given: a module to compile, or code its parent compiled.
#[derive(Clone, Copy, PartialEq)]
enum Code {
    Source,
    Compiled,
}

/// How a loop of domain starts is paced.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// Each starts as soon as the one before was waited for.
    BackToBack,
    /// Each starts [`PAUSE`] after the one before was waited for; the pauses are not counted.
    Paused,
}

/// The pause between two starts of a [`Pace::Paused`] loop: as requests that come now and then.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(3);

/// Starts `count` domains of the tiny module (`module`, as `code`, started as `launch`) one
/// after another, each waited for, paced as `pace` says; returns the count and the nanoseconds
/// they took (the pauses left out).
fn starts(
    nebulet: &Nebulet,
    count: u64,
    module: &[u8],
    code: Code,
    launch: Launch,
    pace: Pace,
) -> Result<(u64, f64), String> {
    nebulet.emulator().block_on(async {
        let mut took = std::time::Duration::ZERO;
        for _ in 0..count {
            if pace == Pace::Paused {
                tokio::time::sleep(PAUSE).await;
            }
            // Made before the clock starts: finding the `nebulet` binary is the bench's work.
            let options =
                DomainOptions { compiled: code == Code::Compiled, launch, ..options("tiny")? };
            let start = Instant::now();
            let domain =
                Domain::start(module.to_vec(), options).await.map_err(|error| error.to_string())?;
            let status = domain.wait().await;
            if status.code != 0 {
                return Err(format!("the tiny domain ended {status:?}"));
            }
            took += start.elapsed();
        }
        Ok((count, took.as_nanos() as f64))
    })
}

fn options(name: &str) -> Result<DomainOptions, String> {
    Ok(DomainOptions::new(super::startup::sibling("nebulet")?, name))
}

/// Isolated create+start+exit against Linux's spawn of a tiny static binary, the domains
/// started as `launch` says, back to back or each after a pause (`pace`).
fn spawn(
    nebulet: &Nebulet,
    settings: &Settings,
    linux: Side,
    launch: Launch,
    pace: Pace,
) -> Result<Comparison, String> {
    let count = if settings.quick { 10 } else { 40 };
    let (description, operation) = match (launch, pace) {
        (Launch::Zygote, Pace::BackToBack) => (
            "Nebulet: `Domain::start` + wait of a 1-page module, back to back (a sandboxed \
             domain: from the third on, one of the zygote's two spares, forked ahead with its \
             kernel booted, replaced meanwhile or once its domain ended; the first compiles the \
             module, the others get its code)",
            "isolated process create+start+exit",
        ),
        (_, Pace::BackToBack) => (
            "Nebulet: the same, each domain forked by the zygote when asked for (no spare)",
            "isolated process create+start+exit, without a spare",
        ),
        (Launch::Zygote, Pace::Paused) => (
            "Nebulet: the same, each started 3 ms after the one before ended (the pauses not \
             counted), with the spares",
            "isolated process create+start+exit, after a pause",
        ),
        (_, Pace::Paused) => (
            "Nebulet: the same, each started 3 ms after the one before ended, without a spare",
            "isolated process create+start+exit, after a pause, without a spare",
        ),
    };
    let side = Side::measure(description, settings.runs, || {
        starts(nebulet, count, TINY.as_bytes(), Code::Source, launch, pace)
    })?;
    Ok(Comparison { operation, nebulet: side, linux, goal: Some(Goal::AtMost(1_000_000.0)) })
}

/// The four rows of [`spawn`]: with and without the spares, back to back and after a pause.
pub fn spawns(
    nebulet: &Nebulet,
    settings: &Settings,
    linux: &Side,
) -> Result<Vec<Comparison>, String> {
    let mut rows = Vec::new();
    for pace in [Pace::BackToBack, Pace::Paused] {
        for launch in [Launch::Zygote, Launch::ZygoteOnRequest] {
            rows.push(spawn(nebulet, settings, linux.clone(), launch, pace)?);
        }
    }
    Ok(rows)
}

/// [`spawn`] as `process_create_with` starts a domain: the module goes in compiled (by the
/// parent's kernel, as a compiled-module file), so the domain loads it instead of compiling.
/// `Launch::Execute` executes each domain's host process (`nebulet domain-child`), as before
/// the zygote: the same start without it, in the same run.
pub fn spawn_compiled(
    nebulet: &Nebulet,
    settings: &Settings,
    linux: Side,
    launch: Launch,
) -> Result<Comparison, String> {
    let (description, operation) = match launch {
        Launch::Zygote | Launch::ZygoteOnRequest => (
            "Nebulet: `Domain::start` + wait of a 1-page module compiled by the parent (as \
             `process_create_with` with `PROCESS_CREATE_ISOLATED` starts one)",
            "isolated child create+start+exit (compiled by the parent)",
        ),
        Launch::Execute => (
            "Nebulet: the same, each domain's host process executed (`nebulet domain-child`) \
             instead of forked by the zygote",
            "isolated child create+start+exit (compiled by the parent), without the zygote",
        ),
    };
    let count = if settings.quick { 10 } else { 40 };
    let compiled = nebulet.emulator().precompile(TINY.as_bytes())?;
    let side = Side::measure(description, settings.runs, || {
        starts(nebulet, count, &compiled, Code::Compiled, launch, Pace::BackToBack)
    })?;
    Ok(Comparison { operation, nebulet: side, linux, goal: Some(Goal::AtMost(1_000_000.0)) })
}

/// A message from the host to a process in a domain and back, against Linux's pipes.
pub fn round_trip(
    nebulet: &Nebulet,
    settings: &Settings,
    linux: Side,
) -> Result<Comparison, String> {
    let count = settings.message_round_trips / 10;
    let side = Side::measure(
        "Nebulet: 8 bytes from the host's channel end, written and read by a task on the \
         parent's runtime (spawned as processes are), to a process in a domain and back",
        settings.runs,
        || {
            // A task on the runtime, where the parent's processes run, rather than the thread
            // that waits for it; spawned as they are (with hand-off: what it wakes runs next
            // on its worker, and it runs next on the worker of what wakes it).
            let (result, trips) = tokio::sync::oneshot::channel();
            let measure = async move {
                let (mine, theirs) = ChannelEnd::crossing_pair();
                let options = DomainOptions { bootstrap: Some(theirs), ..options("echo")? };
                let domain = Domain::start(ECHO.as_bytes().to_vec(), options)
                    .await
                    .map_err(|error| error.to_string())?;
                let trip = async || -> Result<(), String> {
                    let message = CrossingMessage { bytes: vec![7; 8], handles: Vec::new() };
                    let mut pending = Some(message);
                    poll_fn(|context| match mine.poll_write(context, pending.take().unwrap()) {
                        Ok(()) => std::task::Poll::Ready(Ok(())),
                        Err((nebulet_abi::Error::ShouldWait, message)) => {
                            pending = Some(message);
                            std::task::Poll::Pending
                        }
                        Err((error, _)) => std::task::Poll::Ready(Err(format!("{error:?}"))),
                    })
                    .await?;
                    poll_fn(|context| mine.poll_read(context)).await.ok_or("no echo")?;
                    Ok(())
                };
                for _ in 0..count.div_ceil(10) {
                    trip().await?;
                }
                let start = Instant::now();
                for _ in 0..count {
                    trip().await?;
                }
                let elapsed = start.elapsed().as_nanos() as f64;
                drop(mine);
                domain.wait().await;
                Ok((count, elapsed))
            };
            {
                let _runtime = nebulet.emulator().runtime().enter();
                nebulet_hosted::spawn_with_handoff(async move {
                    let _ = result.send(measure.await);
                });
            }
            nebulet.emulator().block_on(trips).map_err(|error| error.to_string())?
        },
    )?;
    Ok(Comparison {
        operation: "cross-domain message round trip",
        nebulet: side,
        linux,
        goal: Some(Goal::AtMost(10_000.0)),
    })
}

/// The compute case of the `bench` program inside a domain, against the same outside one.
pub fn compute(nebulet: &Nebulet, settings: &Settings) -> Result<Comparison, String> {
    let words = [
        "compute".to_string(),
        settings.compute_runs.to_string(),
        settings.compute_limit.to_string(),
    ];
    let outside = Side::measure(
        "Nebulet outside a domain: `compute.rs` in wasm, default engine",
        settings.runs,
        || nebulet.bench_case(&words.iter().map(String::as_str).collect::<Vec<_>>()),
    )?;
    let bench = nebulet::image::find("bench").ok_or("no bench program")?.to_vec();
    let inside = Side::measure(
        "Nebulet in a domain: the same, in a sandboxed `nebulet domain-child`",
        settings.runs,
        || {
            let (mut reader, writer) = std::io::pipe().map_err(|error| error.to_string())?;
            let duplicate = |fd: std::os::fd::BorrowedFd<'_>| {
                fd.try_clone_to_owned().map_err(|error| error.to_string())
            };
            let stdio: [OwnedFd; 3] = [
                duplicate(std::io::stdin().as_fd())?,
                OwnedFd::from(writer),
                duplicate(std::io::stderr().as_fd())?,
            ];
            let options =
                DomainOptions { args: words.to_vec(), stdio: Some(stdio), ..options("bench")? };
            let status = nebulet.emulator().block_on(async {
                let domain = Domain::start(bench.clone(), options)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok::<_, String>(domain.wait().await)
            })?;
            if status.code != 0 {
                return Err(format!("bench in a domain ended {status:?}"));
            }
            let mut output = String::new();
            reader.read_to_string(&mut output).map_err(|error| error.to_string())?;
            parse_operations(&output, "compute")
        },
    )?;
    Ok(Comparison {
        operation: "compute in a domain",
        nebulet: inside,
        linux: outside,
        goal: Some(Goal::WithinOfNative(1.05)),
    })
}
