//! wasmtime alone: the same engine configuration as Nebulet's, with none of Nebulet's kernel,
//! timing what the engine itself costs for a thread switch, a round trip between two tasks and
//! a process start. It is the floor under Nebulet's rows: every Nebulet thread is a wasmtime
//! async call on a fiber, so a Nebulet switch cannot cost less than a fiber's suspend and
//! resume, nor a process start less than a store, an instance and a call.
//!
//! - switch: two stores, each in a loop calling a host function whose future is pending once;
//!   one host loop polls the two calls in turn (no runtime, no waker work), so each poll is one
//!   fiber resumed and suspended: what a hand-off between two green threads needs at least.
//! - round trip: the same two stores as two tasks on tokio's current-thread runtime, handing a
//!   turn back and forth through their wakers, as two processes do (with no channel).
//! - spawn: `Store::new`, `InstancePre::instantiate_async` and `call_async` of the empty
//!   `_start` of a 1-page module, then the store dropped, in a loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use nebulet_hosted::{EngineOptions, wasmtime};

use super::{Settings, Side};

/// Two loops that call the host `n` times each.
const PLAYER: &str = r#"(module
  (import "floor" "pass" (func $pass))
  (func (export "run") (param $n i32)
    (loop $again
      (call $pass)
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again))))"#;

/// The spawn rows' module: one page of memory and an empty `_start`, as Nebulet's.
pub const TINY: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// wasmtime's own cost under Nebulet's rows, measured in the same run.
#[derive(Debug, Clone)]
pub struct Floor {
    pub switch: Side,
    pub round_trip: Side,
    pub spawn_default: Side,
    pub spawn_dense: Side,
}

impl Floor {
    pub fn measure(settings: &Settings) -> Result<Floor, String> {
        let switches = settings.switch_round_trips;
        let switch = Side::measure(
            "wasmtime alone: two stores' calls polled in turn, each pending once per loop",
            settings.runs,
            || switch(&EngineOptions::default(), switches),
        )?;
        let trips = settings.message_round_trips;
        let round_trip = Side::measure(
            "wasmtime alone: two stores as two tasks of tokio's current-thread runtime, \
             handing a turn back and forth",
            settings.runs,
            || round_trip(&EngineOptions::default(), trips),
        )?;
        let spawns = settings.nebulet_spawns;
        let spawn_default = Side::measure(
            "wasmtime alone: store, instance and `_start` of a 1-page module, default engine",
            settings.runs,
            || spawn(&EngineOptions::default(), spawns),
        )?;
        let spawn_dense =
            Side::measure("wasmtime alone: the same, dense engine", settings.runs, || {
                spawn(&EngineOptions::dense(), spawns)
            })?;
        Ok(Floor { switch, round_trip, spawn_default, spawn_dense })
    }

    /// `(Nebulet's row, this floor)` pairs, for the table.
    pub fn rows(&self) -> [(&'static str, &Side); 4] {
        [
            ("thread switch", &self.switch),
            ("message round trip", &self.round_trip),
            ("process create+start+exit", &self.spawn_default),
            ("process create+start+exit, dense engine", &self.spawn_dense),
        ]
    }
}

/// A host future that is pending once, then ready: one suspension of the calling fiber.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

fn engine(options: &EngineOptions) -> Result<wasmtime::Engine, String> {
    wasmtime::Engine::new(&options.config()).map_err(|error| format!("engine: {error:#}"))
}

fn new_store<T: Send>(engine: &wasmtime::Engine, data: T) -> wasmtime::Store<T> {
    let mut store = wasmtime::Store::new(engine, data);
    // No epoch ticks here: a deadline never reached.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

type RunFunction = wasmtime::TypedFunc<i32, ()>;

/// A store running `PLAYER` whose `pass` is `pass`, and its `run`.
fn player<T: Send + 'static, F>(
    engine: &wasmtime::Engine,
    data: T,
    pass: F,
) -> Result<(wasmtime::Store<T>, RunFunction), String>
where
    F: Fn(&T) -> Box<dyn Future<Output = ()> + Send + 'static> + Send + Sync + 'static,
{
    let failed = |error: wasmtime::Error| format!("{error:#}");
    let module = wasmtime::Module::new(engine, PLAYER).map_err(failed)?;
    let mut linker = wasmtime::Linker::new(engine);
    linker
        .func_wrap_async("floor", "pass", move |caller: wasmtime::Caller<'_, T>, (): ()| {
            let wait = Box::into_pin(pass(caller.data()));
            Box::new(async move {
                wait.await;
                Ok(())
            })
        })
        .map_err(failed)?;
    let mut store = new_store(engine, data);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    let instance =
        runtime.block_on(linker.instantiate_async(&mut store, &module)).map_err(failed)?;
    let run = instance.get_typed_func::<i32, ()>(&mut store, "run").map_err(failed)?;
    Ok((store, run))
}

/// `(switches, nanoseconds)`: `count` hand-offs between two stores, after a tenth untimed.
fn switch(options: &EngineOptions, count: u64) -> Result<(u64, f64), String> {
    let engine = engine(options)?;
    let pass = |_: &()| -> Box<dyn Future<Output = ()> + Send> { Box::new(PendingOnce(false)) };
    let (mut first_store, first) = player(&engine, (), pass)?;
    let (mut second_store, second) = player(&engine, (), pass)?;
    let mut turns = |loops: u64| -> Result<(u64, f64), String> {
        let loops = i32::try_from(loops.div_ceil(2)).map_err(|_| "too many switches")?;
        let mut calls = [
            Box::pin(first.call_async(&mut first_store, loops)),
            Box::pin(second.call_async(&mut second_store, loops)),
        ];
        let mut done = [false, false];
        let mut context = Context::from_waker(Waker::noop());
        let mut polls = 0u64;
        let started = Instant::now();
        while done != [true, true] {
            for (call, done) in calls.iter_mut().zip(done.iter_mut()) {
                if !*done {
                    polls += 1;
                    if let Poll::Ready(result) = call.as_mut().poll(&mut context) {
                        result.map_err(|error| format!("{error:#}"))?;
                        *done = true;
                    }
                }
            }
        }
        // The last poll of each call returns instead of switching.
        Ok((polls - 2, started.elapsed().as_nanos() as f64))
    };
    turns(count.div_ceil(10))?;
    turns(count)
}

/// Whose turn it is, and the task waiting for it.
struct Turn {
    player: AtomicUsize,
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Turn {
    /// Gives the turn to the other player, then waits until it comes back.
    fn pass(self: &Arc<Self>, me: usize) -> impl Future<Output = ()> + Send + 'static {
        let turn = self.clone();
        self.player.store(1 - me, Ordering::Release);
        let other = self.wakers.lock().unwrap_or_else(PoisonError::into_inner)[1 - me].take();
        if let Some(waker) = other {
            waker.wake();
        }
        std::future::poll_fn(move |context| {
            if turn.player.load(Ordering::Acquire) == me {
                return Poll::Ready(());
            }
            turn.wakers.lock().unwrap_or_else(PoisonError::into_inner)[me] =
                Some(context.waker().clone());
            // The other may have passed it back between the load and the store.
            if turn.player.load(Ordering::Acquire) == me { Poll::Ready(()) } else { Poll::Pending }
        })
    }
}

/// `(round trips, nanoseconds)`: `count` turns there and back between two tasks.
fn round_trip(options: &EngineOptions, count: u64) -> Result<(u64, f64), String> {
    let engine = engine(options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    let trips = |count: u64| -> Result<(u64, f64), String> {
        let turn = Arc::new(Turn { player: AtomicUsize::new(0), wakers: Mutex::new([None, None]) });
        let loops = i32::try_from(count).map_err(|_| "too many round trips")?;
        let mut players = Vec::new();
        for me in 0..2 {
            let pass = move |turn: &Arc<Turn>| -> Box<dyn Future<Output = ()> + Send> {
                Box::new(turn.pass(me))
            };
            players.push(player(&engine, turn.clone(), pass)?);
        }
        let started = Instant::now();
        runtime.block_on(async {
            let tasks: Vec<_> = players
                .into_iter()
                .enumerate()
                .map(|(me, (mut store, run))| {
                    let turn = turn.clone();
                    tokio::spawn(async move {
                        let result = run.call_async(&mut store, loops).await;
                        // The other's last pass waits for a turn this one will not pass back.
                        drop(turn.pass(me));
                        result
                    })
                })
                .collect();
            for task in tasks {
                task.await
                    .map_err(|error| format!("{error}"))?
                    .map_err(|error| format!("{error:#}"))?;
            }
            Ok::<_, String>(())
        })?;
        Ok((count, started.elapsed().as_nanos() as f64))
    };
    trips(count.div_ceil(10))?;
    trips(count)
}

/// `(starts, nanoseconds)`: `count` stores made, instantiated, run and dropped.
fn spawn(options: &EngineOptions, count: u64) -> Result<(u64, f64), String> {
    let failed = |error: wasmtime::Error| format!("{error:#}");
    let engine = engine(options)?;
    let module = wasmtime::Module::new(&engine, TINY).map_err(failed)?;
    let prepared = wasmtime::Linker::new(&engine).instantiate_pre(&module).map_err(failed)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| format!("runtime: {error}"))?;
    let starts = |count: u64| -> Result<(u64, f64), String> {
        let started = Instant::now();
        runtime.block_on(async {
            for _ in 0..count {
                let mut store = new_store(&engine, ());
                let instance = prepared.instantiate_async(&mut store).await.map_err(failed)?;
                let start =
                    instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(failed)?;
                start.call_async(&mut store, ()).await.map_err(failed)?;
            }
            Ok::<_, String>(())
        })?;
        Ok((count, started.elapsed().as_nanos() as f64))
    };
    starts(count.div_ceil(10))?;
    starts(count)
}
