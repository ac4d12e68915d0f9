//! The domain zygote (`nebulet domain-zygote`): the domains it forks are this process's
//! children, hold none of its descriptors, and keep their sandbox; its failures (killed,
//! stopped) cost a domain start nothing but a new zygote.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use nebulet_abi::ExitReason;
use nebulet_domains::{
    Domain, DomainOptions, Launch, spare_id, spare_ids, stop_zygote_after_next_fork, zygote_id,
};
use nebulet_hosted::{ChannelEnd, CrossingMessage, ExitStatus};
use rustix::process::{Pid, Signal};

use crate::{PATIENCE, System};

/// Echoes every message on its bootstrap channel until the peer closes.
const ECHO: &str = include_str!("../../../../apps/tests/echo.wat");

/// A module whose `_start` returns at once.
const TINY: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Held by the tests that kill or stop the zygote, or look at it: the tests run in parallel,
/// and share this process's one zygote.
static ZYGOTE_TESTS: Mutex<()> = Mutex::new(());

fn options(name: &str) -> DomainOptions {
    DomainOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_nebulet")), name)
}

/// Starts an echo domain (`launch`), checks that one message comes back, and runs `inspect`
/// with its host process's id while it runs; then lets it end, and gives how it did.
fn echo_domain(system: &System, launch: Launch, inspect: impl FnOnce(u32)) -> ExitStatus {
    echo_domain_of(system, ECHO.as_bytes().to_vec(), launch, inspect)
}

/// [`echo_domain`] of `module` (an echo).
fn echo_domain_of(
    system: &System,
    module: Vec<u8>,
    launch: Launch,
    inspect: impl FnOnce(u32),
) -> ExitStatus {
    system.emulator.block_on(async {
        let (mine, theirs) = ChannelEnd::crossing_pair();
        let options = DomainOptions { bootstrap: Some(theirs), launch, ..options("echo") };
        let domain = Domain::start(module, options).await.unwrap();
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

/// The parent sends the setup into the domain's socket while the zygote forks, as much as the
/// socket takes, and the rest once the zygote answered: a setup far larger than a socket's
/// buffer (a module with 4 MiB of custom section) reaches the domain whole, forked or executed.
#[test]
fn a_setup_larger_than_its_socket_holds_reaches_the_domain_whole() {
    let system = System::new();
    let echo = nebulet_hosted::module_binary(ECHO.as_bytes(), None).unwrap().into_owned();
    // A custom section of 4 MiB of `fill` bytes (a module of its own each time: no domain is
    // given shared code).
    let padded = |fill: u8| {
        let payload = vec![fill; 4 << 20];
        let padding = wasm_encoder::CustomSection { name: "padding".into(), data: payload.into() };
        let mut module = echo.clone();
        wasm_encoder::Section::append_to(&padding, &mut module);
        module
    };
    for (fill, launch) in [(1, Launch::Zygote), (2, Launch::Execute)] {
        let status = echo_domain_of(&system, padded(fill), launch, |_| {});
        assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{launch:?}: {status:?}");
    }
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
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |domain| {
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
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let killed = zygote_id().expect("a zygote runs");
    signal(killed, Signal::KILL);
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let replaced = zygote_id().expect("a new zygote runs");
    assert_ne!(replaced, killed);
}

#[test]
fn a_stopped_zygote_is_replaced_and_the_domain_starts() {
    let _serial = ZYGOTE_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let system = System::new();
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let stopped = zygote_id().expect("a zygote runs");
    // It takes the request and never answers: the parent gives up on it after its patience
    // (seconds), kills it, and forks the domain from a new one.
    signal(stopped, Signal::STOP);
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    assert_ne!(zygote_id().expect("a new zygote runs"), stopped);
}

/// The children of this process (`/proc/self/task/*/children`), running or ended.
fn children() -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(list) = std::fs::read_to_string(task.unwrap().path().join("children")) else {
            continue;
        };
        children.extend(list.split_whitespace().map(|id| id.parse::<u32>().unwrap()));
    }
    children.sort_unstable();
    children
}

/// The state letter of process `id` in `/proc/PID/stat` (`T`: stopped), if it still has one.
fn state_of(id: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Runs test `name` of this binary (an ignored one) in a process of its own, so that the
/// children it counts and the spare it sees are its own, not those of the tests beside it.
fn run_alone(name: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the test did not run: {stdout}\n{stderr}");
}

#[test]
fn a_domain_forked_just_before_its_zygote_died_is_reaped_and_the_next_domain_starts() {
    run_alone("zygote::a_zygote_killed_between_its_fork_and_its_answer_leaves_no_domain_unreaped");
}

#[test]
fn a_spare_domain_becomes_the_next_domain_with_its_whole_sandbox_and_is_replaced() {
    run_alone("zygote::the_spare_serves_the_third_domain_without_preopens");
}

/// Waits until two spares are ready, none of them `not`: their ids, the next to be taken first.
fn two_spares(not: Option<u32>) -> Vec<u32> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let ids = spare_ids();
        if ids.len() == 2 && not.is_none_or(|not| !ids.contains(&not)) {
            return ids;
        }
        assert!(std::time::Instant::now() < deadline, "no two spares were forked: {ids:?}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
#[ignore = "run in a process of its own by a_spare_domain_becomes_the_next_domain_..."]
fn the_spare_serves_the_third_domain_without_preopens() {
    let system = System::new();
    // None before the second start: a process that starts one domain never makes a spare.
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    assert_eq!(spare_id(), None);
    let status = echo_domain(&system, Launch::Zygote, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let spares = two_spares(None);
    let spare = spares[0];
    assert_eq!(spare_id(), Some(spare), "the oldest is taken first");
    for id in &spares {
        assert_eq!(parent_of(*id), std::process::id(), "a spare is this process's child");
    }
    // A start that must not take it (the zygote forks at once), and one with a preopened
    // directory (the spare's sandbox has none), leave it where it is.
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |domain| assert_ne!(domain, spare));
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let directory = std::fs::File::open(std::env::temp_dir()).unwrap();
    let status = system.emulator.block_on(async {
        let preopens = vec![("/tmp".to_string(), std::os::fd::OwnedFd::from(directory))];
        let options = DomainOptions { preopens, ..options("tiny") };
        let domain = Domain::start(TINY.as_bytes().to_vec(), options).await.unwrap();
        assert_ne!(domain.id(), spare);
        tokio::time::timeout(PATIENCE, domain.wait()).await.expect("no hang")
    });
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    assert_eq!(spare_id(), Some(spare));
    // The next start takes it, and its last seccomp filter then comes as in every domain:
    // `socketpair`, which only a domain's start may make, kills it.
    let status = system.emulator.block_on(async {
        let options = DomainOptions { probe: Some("socketpair".into()), ..options("echo") };
        let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        assert_eq!(domain.id(), spare, "the start took the spare");
        tokio::time::timeout(PATIENCE, domain.wait()).await.expect("no hang")
    });
    assert_eq!((status.code, status.reason), (-1, ExitReason::DomainFault), "{status:?}");
    assert!(status.message.as_deref().unwrap().contains("(SIGSYS)"), "{status:?}");
    // The other spare was ready meanwhile, so the one taken is replaced once its domain has
    // ended: then two are ready again, the other first, and it serves the next start.
    let ready = two_spares(Some(spare));
    assert_eq!(ready[0], spares[1]);
    let status = echo_domain(&system, Launch::Zygote, |domain| assert_eq!(domain, spares[1]));
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
}

#[test]
#[ignore = "run in a process of its own by a_domain_forked_just_before_its_zygote_died_..."]
fn a_zygote_killed_between_its_fork_and_its_answer_leaves_no_domain_unreaped() {
    let system = System::new();
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let killed = zygote_id().expect("a zygote runs");
    let zygote = rustix::process::pidfd_open(
        Pid::from_raw(killed as i32).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    // The zygote forks the next domain, then stops before it answers: the test kills it there
    // (unless the parent's patience of 2 seconds ran out first, which kills it too).
    stop_zygote_after_next_fork();
    let status = std::thread::scope(|scope| {
        let starting = scope.spawn(|| echo_domain(&system, Launch::ZygoteOnRequest, |_| {}));
        let deadline = std::time::Instant::now() + PATIENCE;
        while state_of(killed).is_some_and(|state| state != 'T') {
            assert!(std::time::Instant::now() < deadline, "the zygote never stopped");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Fails only if the parent reaped it already.
        let _ = rustix::process::pidfd_send_signal(&zygote, Signal::KILL);
        starting.join().unwrap()
    });
    // The domain it forked was found, and served.
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    // And a new zygote forks the next.
    let status = echo_domain(&system, Launch::ZygoteOnRequest, |_| {});
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    let replaced = zygote_id().expect("a new zygote runs");
    assert_ne!(replaced, killed);
    // Every domain is reaped (in the background, once it told how it ended): this process's
    // one child is the new zygote, and none has ended unreaped.
    let deadline = std::time::Instant::now() + PATIENCE;
    while children() != vec![replaced] {
        assert!(std::time::Instant::now() < deadline, "left unreaped: {:?}", children());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let options = rustix::process::WaitIdOptions::EXITED
        | rustix::process::WaitIdOptions::NOHANG
        | rustix::process::WaitIdOptions::NOWAIT;
    let ended = rustix::process::waitid(rustix::process::WaitId::All, options).unwrap();
    assert!(ended.is_none(), "a child ended and was not reaped");
}

/// `chdir` is on no list; `socketpair` only on the zygote's (for a domain's start), which a
/// forked domain's own filter takes away.
#[test]
fn a_forbidden_system_call_ends_a_forked_or_executed_domain_with_sigsys() {
    let system = System::new();
    let cases = [Launch::Zygote, Launch::Execute]
        .into_iter()
        .flat_map(|launch| ["syscall", "socketpair"].map(|probe| (launch, probe)));
    for (launch, probe) in cases {
        let status = system.emulator.block_on(async {
            let options = DomainOptions { probe: Some(probe.into()), launch, ..options("echo") };
            let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
            tokio::time::timeout(PATIENCE, domain.wait()).await.expect("no hang")
        });
        assert_eq!((status.code, status.reason), (-1, ExitReason::DomainFault), "{status:?}");
        let message = status.message.as_deref().unwrap();
        assert!(message.contains("(SIGSYS)"), "{launch:?} {probe}: {status:?}");
    }
}
