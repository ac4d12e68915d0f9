//! The domain zygote (`nebulet domain-zygote`): the domains it forks are this process's
//! children, hold none of its descriptors, and keep their sandbox; its failures (killed,
//! stopped) cost a domain start nothing but a new zygote.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use nebulet_abi::ExitReason;
use nebulet_domains::{Domain, DomainOptions, Launch, zygote_id};
use nebulet_hosted::{ChannelEnd, CrossingMessage, ExitStatus};
use rustix::process::{Pid, Signal};

use crate::{PATIENCE, System};

/// Echoes every message on its bootstrap channel until the peer closes.
const ECHO: &str = include_str!("../../../../apps/tests/echo.wat");

/// Held by the tests that kill or stop the zygote, or look at it: the tests run in parallel,
/// and share this process's one zygote.
static ZYGOTE_TESTS: Mutex<()> = Mutex::new(());

fn options(name: &str) -> DomainOptions {
    DomainOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_nebulet")), name)
}

/// Starts an echo domain (`launch`), checks that one message comes back, and runs `inspect`
/// with its host process's id while it runs; then lets it end, and gives how it did.
fn echo_domain(system: &System, launch: Launch, inspect: impl FnOnce(u32)) -> ExitStatus {
    system.emulator.block_on(async {
        let (mine, theirs) = ChannelEnd::crossing_pair();
        let options = DomainOptions { bootstrap: Some(theirs), launch, ..options("echo") };
        let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        let message = CrossingMessage { bytes: b"ping".to_vec(), handles: Vec::new() };
        mine.try_write(message).map_err(|(error, _)| error).unwrap();
        let echo = tokio::time::timeout(PATIENCE, std::future::poll_fn(|c| mine.poll_read(c)))
            .await
            .expect("no hang");
        assert_eq!(echo.expect("an echo").bytes, b"ping");
        inspect(domain.id());
        drop(mine);
        tokio::time::timeout(PATIENCE, domain.wait()).await.expect("no hang")
    })
}

fn signal(id: u32, signal: Signal) {
    let pid = Pid::from_raw(id as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// The targets of a process's open descriptors (`/proc/PID/fd`), by number.
fn descriptors(id: u32) -> Vec<(u32, PathBuf)> {
    std::fs::read_dir(format!("/proc/{id}/fd"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let number = entry.file_name().to_str().unwrap().parse().unwrap();
            (number, std::fs::read_link(entry.path()).unwrap())
        })
        .collect()
}

/// The parent process id in `/proc/PID/stat` (the field after the state, after the command in
/// parentheses).
fn parent_of(id: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).unwrap();
    let (_, fields) = stat.rsplit_once(')').unwrap();
    fields.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_domain_forked_by_the_zygote_is_this_processs_child_in_its_network_namespace_without_its_descriptors()
 {
    let _serial = ZYGOTE_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let system = System::new();
    let status = echo_domain(&system, Launch::Zygote, |domain| {
        let zygote = zygote_id().expect("a zygote runs");
        assert_ne!(domain, zygote);
        assert_eq!(parent_of(domain), std::process::id(), "the domain is this process's child");
        assert_eq!(parent_of(zygote), std::process::id());
        // The zygote's sockets and pipes (its socket to this process, and any it inherited)
        // must not reach the domain. (Files are named by path, which two descriptors may share:
        // both have this process's stdout, and may have `/dev/null` as stdin and above.)
        let zygote_own: Vec<PathBuf> = descriptors(zygote)
            .into_iter()
            .filter(|&(number, _)| number == 0 || number > 2)
            .map(|(_, target)| target)
            .filter(|target| {
                let target = target.to_string_lossy();
                target.starts_with("socket:") || target.starts_with("pipe:")
            })
            .collect();
        assert!(!zygote_own.is_empty(), "the zygote holds its socket");
        // Where the host allows namespaces (as the sandbox report of `domains.rs` checks): the
        // domain shares its zygote's network namespace, not this process's, and has a user
        // namespace of its own, in which it has no power over that network namespace.
        let namespace = |id: u32, kind: &str| std::fs::read_link(format!("/proc/{id}/ns/{kind}"));
        let here = std::process::id();
        if namespace(zygote, "user").unwrap() != namespace(here, "user").unwrap() {
            assert_eq!(namespace(domain, "net").unwrap(), namespace(zygote, "net").unwrap());
            assert_ne!(namespace(domain, "net").unwrap(), namespace(here, "net").unwrap());
            assert_ne!(namespace(domain, "user").unwrap(), namespace(zygote, "user").unwrap());
        }
        for (number, target) in descriptors(domain) {
            assert!(
                !zygote_own.contains(&target),
                "the domain's {number} is the zygote's {target:?}"
            );
        }
    });
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
}

#[test]
fn a_domain_still_starts_after_its_zygote_was_killed() {
    let _serial = ZYGOTE_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let system = System::new();
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let killed = zygote_id().expect("a zygote runs");
    signal(killed, Signal::KILL);
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let replaced = zygote_id().expect("a new zygote runs");
    assert_ne!(replaced, killed);
}

#[test]
fn a_stopped_zygote_is_replaced_and_the_domain_starts() {
    let _serial = ZYGOTE_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let system = System::new();
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let stopped = zygote_id().expect("a zygote runs");
    // It takes the request and never answers: the parent gives up on it after its patience
    // (seconds), kills it, and forks the domain from a new one.
    signal(stopped, Signal::STOP);
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    assert_ne!(zygote_id().expect("a new zygote runs"), stopped);
}

#[test]
fn a_forbidden_system_call_ends_a_forked_or_executed_domain_with_sigsys() {
    let system = System::new();
    for launch in [Launch::Zygote, Launch::Execute] {
        let status = system.emulator.block_on(async {
            let options =
                DomainOptions { probe: Some("syscall".into()), launch, ..options("echo") };
            let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
            tokio::time::timeout(PATIENCE, domain.wait()).await.expect("no hang")
        });
        assert_eq!((status.code, status.reason), (-1, ExitReason::DomainFault), "{status:?}");
        assert!(status.message.as_deref().unwrap().contains("(SIGSYS)"), "{launch:?}: {status:?}");
    }
}
