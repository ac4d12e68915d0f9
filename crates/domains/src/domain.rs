//! The parent's side: starting a domain's host process, bridging its bootstrap channel, and
//! learning how its program ended, or that the domain itself did.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nebulet_abi::{ExitReason, Limit};
use nebulet_hosted::ExitStatus;
use nebulet_kernel::ChannelEnd;
use tokio::io::AsyncWriteExt;

use crate::bridge::{Bridge, Side, SpinningReader, Violation};
use crate::host_process::{Ended, HostProcess};
use crate::wire::{self, Frame, Setup};

/// What a domain's first process is started with.
#[derive(Debug)]
pub struct DomainOptions {
    /// The `nebulet` executable to run the domain with (`std::env::current_exe()` for the
    /// command itself; a test gives the path of the binary it built).
    pub executable: PathBuf,
    /// The process's name (and `args[0]`).
    pub name: String,
    /// Its WASI arguments after the name.
    pub args: Vec<String>,
    /// Its WASI environment, as `KEY=VALUE`.
    pub environment: Vec<String>,
    /// Listening sockets it is given: its WASI descriptors from 3, before the preopens (as
    /// `nebulet run --listen`). They are its only network.
    pub listeners: Vec<std::net::TcpListener>,
    /// Its preopened directories: guest path, and the host directory open as a descriptor.
    pub preopens: Vec<(String, OwnedFd)>,
    /// Its stdin, stdout and stderr; `None`: this process's own.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Its bootstrap channel, bridged: the host's end, whose peer a local process (or the host)
    /// holds.
    pub bootstrap: Option<ChannelEnd>,
    /// For tests of the sandbox: what the domain's host process itself tries once sandboxed
    /// (see the `probe` module: `report`, `open:PATH`, `connect:ADDRESS`, `syscall`).
    pub probe: Option<String>,
    /// Whether the module is a compiled-module file of this build's kernel (a module the
    /// parent's kernel compiled already) rather than `.wasm` or `.wat` to compile inside.
    pub compiled: bool,
    /// The limits of the process's budget in the domain, as `process_set_limit` sets them. A
    /// `cpu` limit is also the domain's `RLIMIT_CPU` (rounded up to seconds, and one more).
    pub limits: Vec<(Limit, u64)>,
    /// How the domain's host process is made.
    pub launch: Launch,
    /// For a module the domain compiles: whether to give it the code an earlier domain of this
    /// process compiled from the same bytes, if one did, and else to keep the code it compiles
    /// for later ones (see `docs/domains.md`). Useless for a process that starts one domain.
    pub share_code: bool,
}

/// How a domain's host process is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Launch {
    /// Forked by this process's domain zygote (`nebulet domain-zygote`, started at the first
    /// domain), or executed if the zygote cannot (see `docs/domains.md`). A program without
    /// preopened directories takes a spare domain, if one is ready: forked ahead, its kernel
    /// booted (see `docs/domains.md`).
    #[default]
    Zygote,
    /// Forked by the zygote when asked for, as [`Launch::Zygote`] without a spare: no spare is
    /// taken, nor forked for later.
    ZygoteOnRequest,
    /// Executed (`nebulet domain-child`): a new `exec` of the binary for each domain.
    Execute,
}

impl DomainOptions {
    /// Options for a process named `name`, run by `executable`, with nothing else.
    pub fn new(executable: PathBuf, name: impl Into<String>) -> Self {
        Self {
            executable,
            name: name.into(),
            args: Vec::new(),
            environment: Vec::new(),
            listeners: Vec::new(),
            preopens: Vec::new(),
            stdio: None,
            bootstrap: None,
            probe: None,
            compiled: false,
            limits: Vec::new(),
            launch: Launch::Zygote,
            share_code: true,
        }
    }
}

/// A running domain: one host process, sandboxed, running one Nebulet process (and its
/// children). Dropping it kills the domain.
#[derive(Debug)]
pub struct Domain {
    host: HostProcess,
    exit: tokio::sync::oneshot::Receiver<ExitStatus>,
    bridge: Arc<Bridge>,
    /// The time this side's bridge spent spinning for the domain's frames, in nanoseconds: CPU
    /// time spent for the domain, charged with its own (see `bridge::reading`).
    spun: Arc<AtomicU64>,
}

impl Domain {
    /// Starts a domain that compiles `module` (wasm or WAT bytes) inside its sandbox and runs
    /// it. Must be called within a tokio runtime, which runs the bridge.
    pub async fn start(module: Vec<u8>, options: DomainOptions) -> io::Result<Domain> {
        let DomainOptions {
            executable,
            name,
            args,
            environment,
            listeners,
            preopens,
            stdio,
            bootstrap,
            probe,
            compiled,
            limits,
            launch,
            share_code,
        } = options;
        // Code an earlier domain compiled from these bytes goes in compiled; without it, this
        // domain sends back what it compiles (`receive` keeps it).
        let code_key = (share_code && !compiled).then(|| crate::code_cache::key(&module));
        let cached = code_key.as_ref().and_then(crate::code_cache::get);
        let (module, compiled, code_key) = match cached {
            Some(code) => (code.to_vec(), true, None),
            None => (module, compiled, code_key),
        };
        let stdio = match stdio {
            Some(stdio) => stdio,
            None => [
                io::stdin().as_fd().try_clone_to_owned()?,
                io::stdout().as_fd().try_clone_to_owned()?,
                io::stderr().as_fd().try_clone_to_owned()?,
            ],
        };
        // A spare boots with no preopened directory in its sandbox.
        let spare = launch == Launch::Zygote && preopens.is_empty();
        let (guests, directories): (Vec<String>, Vec<OwnedFd>) = preopens.into_iter().unzip();
        let setup = Setup {
            name,
            args,
            environment,
            listeners: listeners.len(),
            preopens: guests,
            module,
            compiled,
            limits: limits.iter().map(|&(limit, value)| (limit as u32, value)).collect(),
            bootstrap: bootstrap.is_some(),
            probe,
            share_code: code_key.is_some(),
        };
        let setup = wire::encode(&setup);
        let descriptors: Vec<OwnedFd> = stdio
            .into_iter()
            .chain(listeners.into_iter().map(OwnedFd::from))
            .chain(directories)
            .collect();
        let (host, parent_socket, handed, setup, refill_when_done) =
            host_process(executable, launch, spare, descriptors, setup).await?;
        let sent = handed?;
        let socket = std::os::unix::net::UnixStream::from(parent_socket);
        socket.set_nonblocking(true)?;
        let mut socket = tokio::net::UnixStream::from_std(socket)?;
        socket.write_all(&setup[sent..]).await?;
        // Each half registered with the poller only while it waits (`bridge::split`).
        let (reader, outgoing) = crate::bridge::split(socket)?;
        tokio::spawn(outgoing.clone().flush_loop());
        let bridge = Bridge::new(Side::Parent, outgoing, tokio::runtime::Handle::current());
        if let Some(end) = bootstrap {
            bridge.attach(wire::BOOTSTRAP, end);
        }
        let (exit_sender, exit) = tokio::sync::oneshot::channel();
        let host_process = rustix::process::Pid::from_raw(host.id() as i32);
        let spun = reader.spun();
        let ending = Ending { exit: exit_sender, host_process, refill_when_done };
        tokio::spawn(receive(reader, bridge.clone(), ending, code_key));
        Ok(Domain { host, exit, bridge, spun })
    }

    /// The host process's id.
    pub fn id(&self) -> u32 {
        self.host.id()
    }

    /// The CPU time spent for the domain so far, in nanoseconds, besides its host process's: its
    /// bridge's spinning here.
    pub(crate) fn spun(&self) -> Arc<AtomicU64> {
        self.spun.clone()
    }

    /// Kills the domain's host process (its processes end "domain fault").
    pub fn kill(&mut self) {
        self.host.kill();
    }

    /// Waits for the domain's first process to end. A domain that ended without saying how its
    /// program did (it crashed, was killed, or broke its seccomp policy) gives "domain fault",
    /// with what happened to it in the message. A domain that told is killed then (only its
    /// teardown is left, see `receive_frames`), and its host process is waited for and reaped
    /// in the background (a task on the runtime), not before this returns: no budget waits for
    /// its CPU time here ([`Domain::wait_or_kill`] waits, for the kernel's budgets).
    pub async fn wait(mut self) -> ExitStatus {
        match (&mut self.exit).await {
            Ok(told) => {
                let Domain { mut host, bridge, .. } = self;
                tokio::spawn(async move {
                    let _ = host.wait().await;
                    bridge.disconnect();
                });
                told
            }
            // It closed its socket without telling: how its host process ended is the status.
            Err(_) => {
                let ended = self.host.wait().await;
                self.bridge.disconnect();
                fault(ended)
            }
        }
    }

    /// [`Domain::wait`], killing the domain if `kill` completes first; also gives the CPU time
    /// its host process used, in nanoseconds (read from `/proc` once it has ended, before it is
    /// reaped), with the time this side's bridge spent spinning for it.
    pub async fn wait_or_kill(mut self, kill: impl Future<Output = ()>) -> (ExitStatus, i64) {
        let mut kill = std::pin::pin!(kill);
        let mut killed = false;
        let told = tokio::select! {
            told = &mut self.exit => told.ok(),
            () = &mut kill => {
                killed = true;
                self.kill();
                (&mut self.exit).await.ok()
            }
        };
        let cpu = cpu_time_at_end(&self.host);
        let cpu = if killed {
            cpu.await
        } else {
            let mut cpu = std::pin::pin!(cpu);
            tokio::select! {
                cpu = &mut cpu => cpu,
                () = &mut kill => {
                    self.host.kill();
                    cpu.await
                }
            }
        };
        let ended = self.host.wait().await;
        self.bridge.disconnect();
        // A domain that told how its program ended is killed then (`receive_frames`).
        let status = match (told, ended) {
            (Some(status), Ok(ended))
                if ended.success()
                    || ended.signal == Some(libc::SIGKILL)
                    || status.reason == ExitReason::DomainFault =>
            {
                status
            }
            (_, ended) => fault(ended),
        };
        let spun = i64::try_from(self.spun.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        (status, cpu.saturating_add(spun))
    }
}

/// A domain's host process just started: the process, this side of its socket, what its
/// handover gave, the setup (of which what the handover did not send is still to be sent), and
/// the executable to fork a spare of once the domain has ended, if it took one and its
/// replacement waits for that (see `spare::another_is_coming`).
type HostProcessStarted = (HostProcess, OwnedFd, io::Result<usize>, Vec<u8>, Option<PathBuf>);

/// Starts a domain's host process as `launch` says, handing it `descriptors` and `setup` (what
/// it reads first): the spare, if `spare` and one is ready, at once, on this task (handing it
/// over does not block); else, off the runtime's workers, a fork by the zygote (blocking, for
/// as long as the zygote takes, seconds if it is stuck) or an execution.
async fn host_process(
    executable: PathBuf,
    launch: Launch,
    spare: bool,
    descriptors: Vec<OwnedFd>,
    setup: Vec<u8>,
) -> io::Result<HostProcessStarted> {
    let refill = spare && crate::spare::count_start();
    let ready =
        spare.then(|| crate::spare::take_if_ready(&executable, &handover(&descriptors, &setup)));
    let (host, socket, handed, setup, took_spare) = match ready.flatten() {
        Some((host, socket, handed)) => (host, socket, handed, setup, true),
        None => {
            let executable = executable.clone();
            let starting = tokio::task::spawn_blocking(move || {
                let started = {
                    let handover = handover(&descriptors, &setup);
                    // One may be forked meanwhile: this waits for it.
                    match (
                        spare.then(|| crate::spare::take(&executable, &handover)).flatten(),
                        launch,
                    ) {
                        (Some(taken), _) => Ok((taken, true)),
                        (None, Launch::Zygote | Launch::ZygoteOnRequest) => {
                            crate::zygote::start(&executable, &handover)
                                .map(|started| (started, false))
                        }
                        (None, Launch::Execute) => crate::zygote::execute(&executable, &handover)
                            .map(|started| (started, false)),
                    }
                };
                started.map(|((host, socket, handed), took)| (host, socket, handed, setup, took))
            });
            starting.await.map_err(io::Error::other)??
        }
    };
    let refill_when_done = if !refill {
        None
    } else if took_spare && crate::spare::another_is_coming() {
        Some(executable)
    } else {
        // For the next start, while this one goes on.
        crate::spare::refill_in_background(executable);
        None
    };
    Ok((host, socket, handed, setup, refill_when_done))
}

/// What a new domain reads first, sent into its socket (see `zygote::start`): `descriptors`
/// (stdio, listeners, preopens), then as much of `setup` as the socket takes without waiting.
fn handover<'a>(
    descriptors: &'a [OwnedFd],
    setup: &'a [u8],
) -> impl Fn(std::os::fd::BorrowedFd<'_>) -> io::Result<usize> + Sync + 'a {
    move |socket| {
        let borrowed: Vec<_> = descriptors.iter().map(AsFd::as_fd).collect();
        crate::handoff::send(socket, &borrowed)?;
        send_without_waiting(socket, setup)
    }
}

/// Writes what `socket` (blocking) takes of `bytes` now, without waiting for room: how many.
fn send_without_waiting(socket: std::os::fd::BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    let mut sent = 0;
    while sent < bytes.len() {
        match rustix::net::send(socket, &bytes[sent..], flags) {
            Ok(count) => sent += count,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(sent)
}

/// The status of a domain that did not tell how its program ended: "domain fault", with what
/// became of its host process.
fn fault(ended: io::Result<Ended>) -> ExitStatus {
    ExitStatus { code: -1, reason: ExitReason::DomainFault, message: Some(describe(ended)) }
}

/// How often a running domain's CPU time and memory are read and charged (`/proc` counts CPU
/// time in clock ticks, 10 ms on Linux).
const METER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Reports the CPU time and private memory of host process `id` (a running domain, a child of
/// this process, not reaped while this runs) to `meter` every [`METER_INTERVAL`], with the CPU
/// time `spun` here for it (its bridge's spinning); never completes.
pub(crate) async fn meter(id: u32, spun: Arc<AtomicU64>, meter: nebulet_kernel::DomainMeter) {
    let (stat, statm) = (format!("/proc/{id}/stat"), format!("/proc/{id}/statm"));
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    let page_size = rustix::param::page_size() as u64;
    loop {
        tokio::time::sleep(METER_INTERVAL).await;
        if let (Ok(stat), Ok(statm)) =
            (std::fs::read_to_string(&stat), std::fs::read_to_string(&statm))
        {
            let spun = i64::try_from(spun.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
            let cpu = cpu_time_of_stat(&stat, ticks_per_second).saturating_add(spun);
            meter.report(cpu, private_pages_of_statm(&statm).saturating_mul(page_size));
        }
    }
}

/// The resident pages of a `/proc/PID/statm` line that no other process shares: resident less
/// shared (its second field less its third).
fn private_pages_of_statm(statm: &str) -> u64 {
    let mut fields = statm.split_whitespace().skip(1).map(|field| field.parse::<u64>().ok());
    match (fields.next().flatten(), fields.next().flatten()) {
        (Some(resident), Some(shared)) => resident.saturating_sub(shared),
        _ => 0,
    }
}

/// The CPU time, in nanoseconds, that `host` (a child of this process) used, once it has ended:
/// waited for without reaping it, so that `/proc` still shows its threads' total. 0 if it cannot
/// be read.
async fn cpu_time_at_end(host: &HostProcess) -> i64 {
    if !host.ended().await {
        return 0;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", host.id())) else {
        return 0;
    };
    cpu_time_of_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// The user and system CPU time in a `/proc/PID/stat` line, in nanoseconds (fields 14 and 15,
/// in clock ticks, after the command in parentheses, which may hold spaces).
fn cpu_time_of_stat(stat: &str, ticks_per_second: u64) -> i64 {
    let Some((_, fields)) = stat.rsplit_once(')') else { return 0 };
    let mut fields = fields.split_whitespace().skip(11);
    let mut tick = || fields.next().and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    let ticks = tick().saturating_add(tick());
    let nanoseconds = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    i64::try_from(nanoseconds).unwrap_or(i64::MAX)
}

/// What became of a domain's host process, for the "domain fault" message.
fn describe(ended: io::Result<Ended>) -> String {
    let how = match ended {
        Err(error) => format!("could not be waited for ({error})"),
        Ok(status) => match (status.signal, status.code) {
            (Some(signal), _) if signal == libc::SIGSYS => {
                "was killed for a system call outside its sandbox's policy (SIGSYS)".into()
            }
            (Some(signal), _) => format!("was killed by signal {signal}"),
            (None, Some(code)) => format!("exited with code {code}"),
            (None, None) => "ended".into(),
        },
    };
    format!("ended: its domain's host process {how}")
}

/// What [`receive`] does as the domain ends: tells `exit` how its program ended, kills
/// `host_process` once it told (or broke the protocol), and then forks a spare of
/// `refill_when_done`, if given (the domain took a spare, see `spare::another_is_coming`).
struct Ending {
    exit: tokio::sync::oneshot::Sender<ExitStatus>,
    host_process: Option<rustix::process::Pid>,
    refill_when_done: Option<PathBuf>,
}

/// Reads the domain's frames until it closes its socket, or breaks the protocol, which kills
/// it; every bridged channel then closes here (see [`Ending`]).
async fn receive(
    reader: SpinningReader,
    bridge: Arc<Bridge>,
    ending: Ending,
    code_key: Option<crate::code_cache::Key>,
) {
    let Ending { exit, host_process, refill_when_done } = ending;
    // Frames are read in bulk: one read takes what has arrived, not a frame's length first.
    let mut reader = tokio::io::BufReader::new(reader);
    let mut exit = Some(exit);
    let broken = 'frames: {
        if let Some(key) = code_key {
            // The domain's first body: the code it compiled, before its process started.
            match wire::read_body(&mut reader, crate::code_cache::MAX_CODE_BYTES + 16).await {
                Ok(Some(body)) => match wire::decode::<Vec<u8>>(&body) {
                    Ok(code) => crate::code_cache::put(key, code),
                    Err(error) => break 'frames Some(format!("bad code ({error})")),
                },
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    break 'frames Some(format!("bad code ({error})"));
                }
                Ok(None) | Err(_) => break 'frames None,
            }
        }
        receive_frames(&mut reader, &bridge, &mut exit, host_process).await
    };
    if let Some(what) = broken {
        // The domain is not to be trusted any more: it ends, and its processes with it. It is
        // not reaped before `Domain::wait`, so its id is still its own.
        if let Some(pid) = host_process {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        if let Some(sender) = exit.take() {
            let message = format!("ended: its domain broke the bridge's protocol: {what}");
            let _ = sender.send(ExitStatus {
                code: -1,
                reason: ExitReason::DomainFault,
                message: Some(message),
            });
        }
    }
    bridge.disconnect();
    if let Some(executable) = refill_when_done {
        crate::spare::refill_in_background(executable);
    }
}

/// Reads the domain's frames until it closes its socket (`None`), or breaks the protocol (what
/// it did); passes the `Exit` frame's status to `exit`, and then kills the domain's host
/// process: it sends that frame last, once its program's bytes are all out, so only its
/// teardown is left, which no one need wait for (it is still waited for and reaped, and
/// `Domain::wait_or_kill` counts its CPU time before it returns).
async fn receive_frames(
    reader: &mut tokio::io::BufReader<SpinningReader>,
    bridge: &Arc<Bridge>,
    exit: &mut Option<tokio::sync::oneshot::Sender<ExitStatus>>,
    host_process: Option<rustix::process::Pid>,
) -> Option<String> {
    loop {
        let body = match wire::read_body(reader, wire::MAX_FRAME_BYTES).await {
            Ok(Some(body)) => body,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                break Some(format!("a bad frame ({error})"));
            }
            // The end of the stream, or the domain died with bytes unread (a reset).
            Ok(None) | Err(_) => break None,
        };
        let frame = match wire::decode::<Frame>(&body) {
            Ok(frame) => frame,
            Err(error) => break Some(format!("a bad frame ({error})")),
        };
        if let Frame::Exit { code, reason, message } = frame {
            let reason = ExitReason::from_raw(reason).unwrap_or(ExitReason::DomainFault);
            if let Some(sender) = exit.take() {
                let _ = sender.send(ExitStatus { code, reason, message });
            }
            // Not reaped before `Domain::wait`, so its id is still its own.
            if let Some(pid) = host_process {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        } else if let Err(Violation(what)) = bridge.receive(frame) {
            break Some(what.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cpu_time_of_a_stat_line_is_its_user_and_system_ticks() {
        let stat = "42 (nebulet (x) y) Z 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0";
        assert_eq!(super::cpu_time_of_stat(stat, 100), 2_000_000_000);
        assert_eq!(super::cpu_time_of_stat("garbage", 100), 0);
    }

    #[test]
    fn the_private_pages_of_a_statm_line_are_its_resident_less_shared_pages() {
        assert_eq!(super::private_pages_of_statm("1435659 7327 3501 3606 0 266720 0"), 3826);
        assert_eq!(super::private_pages_of_statm("1 2"), 0);
        assert_eq!(super::private_pages_of_statm(""), 0);
    }
}
