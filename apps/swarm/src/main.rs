//! `swarm [N] [K]`: starts N `worker` processes (default 1000), each with a channel of its own
//! as its bootstrap handle, sends each K numbered messages (default 10) and checks that every
//! reply arrives exactly once and is right; then closes the channels and checks that every
//! worker exits with code 0.
//!
//! Message `j` to worker `i` is `(i, j)` as two little-endian `u32`s; the reply is
//! `(i, j, j * 2 + 1)`. Workers are served in batches of at most 64 (one `wait_many` call);
//! writes that meet a full queue (`ERR_SHOULD_WAIT`) are retried after waiting for WRITABLE,
//! while replies keep being read, so neither side can block the other for good.
//!
//! Prints `swarm: N workers, M messages, L lost, D duplicated` and exits 0 when nothing went
//! wrong, else prints what did and exits 1.

use std::time::Duration;

use sip::abi::WAIT_MANY_MAX_ITEMS;
use sip::bootstrap::Image;
use sip::{Channel, Error, InfoProcessExt, Message, Process, Signals, WaitItem, clock};

/// How long a batch may make no progress at all before swarm gives up on it.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long every worker has, in total, to end once its channel is closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many workers are served at once.
const BATCH: usize = WAIT_MANY_MAX_ITEMS as usize;

/// One worker and what it has been sent and has answered.
struct Worker {
    process: Process,
    /// Swarm's end of the worker's channel; `None` once closed.
    channel: Option<Channel>,
    /// How many messages were sent (messages `0..sent`).
    sent: u32,
    /// Which replies arrived.
    answered: Vec<bool>,
    /// How many distinct replies arrived.
    received: u32,
}

/// What went wrong, counted.
#[derive(Debug, Default)]
struct Tally {
    lost: u64,
    duplicated: u64,
    wrong: u64,
    errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, message: String) {
        // Keep the report readable even if every worker fails.
        if self.errors.len() < 20 {
            println!("swarm: {message}");
        }
        self.errors.push(message);
    }
}

fn main() {
    let (n, k) = match arguments() {
        Ok(counts) => counts,
        Err(message) => {
            println!("swarm: {message}; usage: swarm [WORKERS] [MESSAGES_PER_WORKER]");
            sip::process::exit(1);
        }
    };
    let starting = clock::monotonic();
    let mut workers = match start(n, k) {
        Ok(workers) => workers,
        Err(message) => {
            println!("swarm: {message}");
            sip::process::exit(1);
        }
    };
    let elapsed_us = (clock::monotonic() - starting) / 1000;
    println!("swarm: started {n} workers in {elapsed_us} us");

    let mut tally = Tally::default();
    let mut message = Message::new();
    for (batch, chunk) in workers.chunks_mut(BATCH).enumerate() {
        run_batch(chunk, batch * BATCH, k, &mut tally, &mut message);
    }
    collect_exits(&workers, &mut tally);

    let total = u64::from(n) * u64::from(k);
    println!(
        "swarm: {n} workers, {total} messages, {} lost, {} duplicated",
        tally.lost, tally.duplicated
    );
    if tally.wrong > 0 {
        println!("swarm: {} wrong replies", tally.wrong);
    }
    if tally.lost > 0 || tally.duplicated > 0 || tally.wrong > 0 || !tally.errors.is_empty() {
        println!("swarm: FAILED ({} errors)", tally.errors.len());
        for worker in &workers {
            let _ = worker.process.kill();
        }
        workers.clear();
        sip::process::exit(1);
    }
}

/// `N` and `K` from the arguments (after the program name).
fn arguments() -> Result<(u32, u32), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: u32| -> Result<u32, String> {
        args.get(index)
            .map_or(Ok(default), |text| text.parse().map_err(|_| format!("not a number: {text:?}")))
    };
    if args.len() > 2 {
        return Err(format!("{} arguments, expected at most 2", args.len()));
    }
    Ok((number(0, 1000)?, number(1, 10)?))
}

/// Starts `n` workers of the image's `worker` app.
fn start(n: u32, k: u32) -> Result<Vec<Worker>, String> {
    let bootstrap = sip::process::bootstrap_channel().ok_or(sip::process::NO_BOOTSTRAP)?;
    let image =
        Image::receive(&bootstrap).map_err(|error| format!("cannot read the image: {error}"))?;
    let module = image.module("worker").ok_or("no app worker in the image")?;
    let mut workers: Vec<Worker> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let started = Channel::create().and_then(|(ours, theirs)| {
            let process = Process::create(module, &format!("worker-{i}"))?;
            process.start(Some(theirs.into_handle()))?;
            Ok((process, ours))
        });
        match started {
            Ok((process, channel)) => workers.push(Worker {
                process,
                channel: Some(channel),
                sent: 0,
                answered: vec![false; k as usize],
                received: 0,
            }),
            Err(error) => {
                for worker in &workers {
                    let _ = worker.process.kill();
                }
                return Err(format!("cannot start worker {i}: {error}"));
            }
        }
    }
    Ok(workers)
}

/// Sends every message to the workers of one batch (worker indices from `base`) and reads
/// every reply, then closes their channels.
fn run_batch(batch: &mut [Worker], base: usize, k: u32, tally: &mut Tally, message: &mut Message) {
    let mut deadline = clock::deadline_after(STALL_TIMEOUT);
    loop {
        let mut progress = false;
        for (offset, worker) in batch.iter_mut().enumerate() {
            progress |= pump(worker, base + offset, k, tally, message);
        }
        let unfinished: Vec<usize> = (0..batch.len())
            .filter(|&offset| batch[offset].channel.is_some() && batch[offset].received < k)
            .collect();
        if unfinished.is_empty() {
            break;
        }
        if progress {
            deadline = clock::deadline_after(STALL_TIMEOUT);
            continue;
        }
        let mut items: Vec<WaitItem> = unfinished
            .iter()
            .filter_map(|&offset| {
                let worker = &batch[offset];
                let mut signals = Signals::READABLE | Signals::PEER_CLOSED;
                if worker.sent < k {
                    signals |= Signals::WRITABLE;
                }
                Some(WaitItem::new(worker.channel.as_ref()?, signals))
            })
            .collect();
        match sip::wait_many(&mut items, deadline) {
            Ok(()) => {}
            Err(Error::TimedOut) => {
                for &offset in &unfinished {
                    let worker = &mut batch[offset];
                    tally.error(format!(
                        "worker {}: no progress for {} s ({} of {k} replies)",
                        base + offset,
                        STALL_TIMEOUT.as_secs(),
                        worker.received
                    ));
                    close(worker, tally);
                }
                break;
            }
            Err(error) => {
                tally.error(format!("wait_many: {error}"));
                batch.iter_mut().for_each(|worker| close(worker, tally));
                break;
            }
        }
    }
    // A last look for extra replies, then let the workers go.
    for (offset, worker) in batch.iter_mut().enumerate() {
        pump(worker, base + offset, k, tally, message);
        close(worker, tally);
    }
}

/// Sends what the worker's queue takes and reads what has arrived; whether anything moved.
fn pump(worker: &mut Worker, i: usize, k: u32, tally: &mut Tally, message: &mut Message) -> bool {
    let Some(channel) = worker.channel.take() else {
        return false;
    };
    let (progress, open) = exchange(&channel, worker, i, k, tally, message);
    worker.channel = Some(channel);
    if !open {
        close(worker, tally);
    }
    progress || !open
}

/// [`pump`]'s work on the worker's channel: whether anything moved, whether the channel is
/// still usable.
fn exchange(
    channel: &Channel,
    worker: &mut Worker,
    i: usize,
    k: u32,
    tally: &mut Tally,
    message: &mut Message,
) -> (bool, bool) {
    let mut progress = false;
    while worker.sent < k {
        let mut payload = [0u8; 8];
        payload[0..4].copy_from_slice(&(i as u32).to_le_bytes());
        payload[4..8].copy_from_slice(&worker.sent.to_le_bytes());
        match channel.write(&payload, Vec::new()) {
            Ok(()) => {
                worker.sent += 1;
                progress = true;
            }
            Err(failed) if failed.error == Error::ShouldWait => break,
            Err(failed) => {
                tally.error(format!("worker {i}: write failed: {}", failed.error));
                return (progress, false);
            }
        }
    }
    loop {
        match channel.read_into(message) {
            Ok(()) => {
                progress = true;
                check_reply(worker, i, &message.bytes, tally);
            }
            Err(Error::ShouldWait) => return (progress, true),
            Err(Error::PeerClosed) => {
                if worker.received < k {
                    tally.error(format!(
                        "worker {i}: closed its channel after {} of {k} replies",
                        worker.received
                    ));
                }
                return (progress, false);
            }
            Err(error) => {
                tally.error(format!("worker {i}: read failed: {error}"));
                return (progress, false);
            }
        }
    }
}

/// Checks one reply of worker `i`.
fn check_reply(worker: &mut Worker, i: usize, bytes: &[u8], tally: &mut Tally) {
    let word = |index: usize| {
        bytes
            .get(index * 4..index * 4 + 4)
            .map(|word| u32::from_le_bytes(word.try_into().expect("a slice of 4 bytes")))
    };
    let (Some(from), Some(j), Some(value), 12) = (word(0), word(1), word(2), bytes.len()) else {
        tally.wrong += 1;
        tally.error(format!("worker {i}: a reply of {} bytes", bytes.len()));
        return;
    };
    if from as usize != i || j >= worker.sent || value != j.wrapping_mul(2).wrapping_add(1) {
        tally.wrong += 1;
        tally.error(format!("worker {i}: wrong reply ({from}, {j}, {value})"));
        return;
    }
    // `j < sent <= k`, so the slot exists.
    let Some(seen) = worker.answered.get_mut(j as usize) else {
        return;
    };
    if *seen {
        tally.duplicated += 1;
        tally.error(format!("worker {i}: reply {j} arrived twice"));
    } else {
        *seen = true;
        worker.received += 1;
    }
}

/// Closes swarm's end of the worker's channel (the worker then exits), counting the replies
/// that never came as lost.
fn close(worker: &mut Worker, tally: &mut Tally) {
    if worker.channel.take().is_some() {
        tally.lost += u64::from(worker.answered.len() as u32 - worker.received);
    }
}

/// Waits until every worker has ended and checks that each exited with code 0.
fn collect_exits(workers: &[Worker], tally: &mut Tally) {
    let deadline = clock::deadline_after(EXIT_TIMEOUT);
    for (i, worker) in workers.iter().enumerate() {
        match worker.process.wait_terminated(deadline) {
            Ok(info) if info.succeeded() => {}
            Ok(info) => tally.error(format!("worker {i} {}", info.describe())),
            Err(Error::TimedOut) => {
                tally.error(format!(
                    "worker {i} has not ended {} s after its channel closed",
                    EXIT_TIMEOUT.as_secs()
                ));
            }
            Err(error) => tally.error(format!("worker {i}: {error}")),
        }
    }
}
