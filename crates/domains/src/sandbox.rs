//! The sandbox a domain's host process puts itself in before any guest code runs: new
//! namespaces, resource limits, Landlock's file-system and network rules, and a seccomp-bpf
//! allow-list of system calls (anything else kills the domain).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What was applied, for `nebulet run --isolate -v` and the tests: one line per layer.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) lines: Vec<String>,
}

impl Report {
    fn note(&mut self, line: String) {
        self.lines.push(line);
    }
}

/// The Landlock ABI the rules are written for (6 adds the scopes of signals and abstract
/// sockets); on an older kernel, what it knows is enforced and the report says so.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Files the hosted platform reads while it starts (its capacity), read-only.
const PLATFORM_FILES: [&str; 4] =
    ["/proc/meminfo", "/proc/sys/vm/max_map_count", "/proc/self/maps", "/proc/self/status"];

/// Most descriptors a domain may have open (its guests' files are host descriptors).
const OPEN_FILES: u64 = 4096;

/// A domain's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// A new one of its own (a domain executed on its own).
    Own,
    /// Its zygote's, made once by [`enter_zygote_namespaces`] and shared by the domains it
    /// forks: making one took about 0.35 ms of each domain's start.
    Zygote,
}

/// Moves the (still single-threaded) process into a new user namespace, and, for
/// [`Network::Own`], a new network namespace: either way it sees no network interface but a
/// loopback, which is down. In its own user namespace it has no capability over the network
/// namespace of its zygote, which the zygote's user namespace owns: it cannot bring the
/// loopback up or give it an address. Where the host forbids new namespaces (some
/// containers), the report says so and the other layers still apply.
pub(crate) fn enter_namespaces(network: Network, report: &mut Report) {
    use rustix::thread::UnshareFlags;
    let (flags, what) = match network {
        Network::Own => {
            (UnshareFlags::NEWUSER | UnshareFlags::NEWNET, "new user and network namespaces")
        }
        Network::Zygote => (
            UnshareFlags::NEWUSER,
            "a new user namespace, in the network namespace of its zygote (shared with the \
             other domains it forks, which cannot configure it)",
        ),
    };
    #[expect(
        deprecated,
        reason = "rustix deprecates `unshare` because of CLONE_FILES, which is not asked here"
    )]
    let result = rustix::thread::unshare(flags);
    match result {
        Ok(()) => report.note(format!("namespaces: {what}")),
        Err(error) => report.note(format!("namespaces: not entered ({error})")),
    }
}

/// The zygote's namespaces, entered once while it is single-threaded: a user namespace (so that
/// it may make the next without privileges) that maps its own user and group to themselves (so
/// that its domains may make user namespaces inside it), and the network namespace its domains
/// share. `Ok(None)` where the host forbids new namespaces: its domains then try their own.
/// An error once inside (no mapping): the zygote cannot fork domains that enter theirs.
pub(crate) fn enter_zygote_namespaces() -> Result<Option<Network>, String> {
    use rustix::thread::UnshareFlags;
    let (user, group) = (rustix::process::geteuid(), rustix::process::getegid());
    #[expect(
        deprecated,
        reason = "rustix deprecates `unshare` because of CLONE_FILES, which is not asked here"
    )]
    let result = rustix::thread::unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNET);
    if result.is_err() {
        return Ok(None);
    }
    let (user, group) = (user.as_raw(), group.as_raw());
    for (file, line) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("{user} {user} 1")),
        ("/proc/self/gid_map", format!("{group} {group} 1")),
    ] {
        std::fs::write(file, line).map_err(|error| format!("cannot write {file}: {error}"))?;
    }
    Ok(Some(Network::Zygote))
}

/// Limits what the process may hold: no core dumps, no locked memory, a bounded number of
/// open files.
pub(crate) fn limit_resources(report: &mut Report) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut applied = Vec::new();
    let zero = Rlimit { current: Some(0), maximum: Some(0) };
    for (resource, name) in [(Resource::Core, "core 0"), (Resource::Memlock, "memlock 0")] {
        if setrlimit(resource, zero).is_ok() {
            applied.push(name.to_string());
        }
    }
    let files = getrlimit(Resource::Nofile).maximum.map_or(OPEN_FILES, |max| max.min(OPEN_FILES));
    if setrlimit(Resource::Nofile, Rlimit { current: Some(files), maximum: Some(files) }).is_ok() {
        applied.push(format!("nofile {files}"));
    }
    report.note(format!("rlimits: {}", applied.join(", ")));
}

/// Limits the process's CPU time to a little over `nanoseconds`, if given: a second wall behind
/// the domain's kernel, which ends the process at its `cpu` limit itself. The soft limit
/// signals (SIGXCPU ends the domain), the hard one kills.
pub(crate) fn limit_cpu(nanoseconds: Option<u64>, report: &mut Report) {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let Some(nanoseconds) = nanoseconds else { return };
    let seconds = nanoseconds.div_ceil(1_000_000_000).saturating_add(1);
    let limit = Rlimit { current: Some(seconds), maximum: Some(seconds.saturating_add(1)) };
    if setrlimit(Resource::Cpu, limit).is_ok() {
        report.note(format!("rlimit: cpu {seconds}s"));
    }
}

/// Landlock: no file-system access but beneath the preopened directories (and a few files of
/// `/proc` read-only), no TCP bind or connect, no signals or abstract sockets outside. Must run
/// before the process starts threads: Landlock restricts the calling thread and those it starts.
pub(crate) fn restrict_files(preopens: &[OwnedFd], report: &mut Report) -> Result<(), String> {
    let failed = |error: landlock::RulesetError| format!("cannot set up Landlock: {error}");
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(failed)?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))
        .map_err(failed)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(failed)?
        .create()
        .map_err(failed)?;
    for directory in preopens {
        ruleset = ruleset.add_rule(PathBeneath::new(directory, all)).map_err(failed)?;
    }
    for file in PLATFORM_FILES {
        if let Ok(descriptor) = PathFd::new(file) {
            ruleset = ruleset
                .add_rule(PathBeneath::new(descriptor, AccessFs::ReadFile))
                .map_err(failed)?;
        }
    }
    let status = ruleset.restrict_self().map_err(failed)?;
    let enforced = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partly enforced (an older kernel)",
        RulesetStatus::NotEnforced => "not enforced (the kernel has no Landlock)",
    };
    report.note(format!(
        "landlock: {enforced}: files only beneath {} preopened directories, no TCP bind or \
         connect, no signals or abstract sockets outside",
        preopens.len()
    ));
    Ok(())
}

/// The system calls a domain makes once sandboxed, found by running domains under `strace -f`
/// (threads, spinning, futexes, traps, files beneath preopens, stdio, clocks, entropy): the
/// runtime's threads and memory and the JIT's code, its timers and event loop, files beneath
/// the preopens, stdio, and the socket to the parent (which it has: it cannot make a socket,
/// nor exec, nor signal anyone). `ioctl` and `prctl` are allowed for one or two requests each
/// (below).
const ALLOWED: &[i64] = &[
    // Memory, and the JIT's code (a memfd holds a module's memory image).
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_memfd_create,
    // Threads, their signal masks and stacks (a trap returns from wasmtime's handler).
    libc::SYS_clone3,
    libc::SYS_clone,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_setpriority,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Time, entropy, the event loop.
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    // The allocator (mimalloc): the NUMA node a thread runs on, and, once, how many nodes
    // there are (`access` of `/sys/devices/system/node/nodeN`: no more than `newfstatat`
    // below tells).
    libc::SYS_getcpu,
    libc::SYS_access,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    // Descriptors it has: stdio, the parent's socket, files beneath the preopens (Landlock
    // confines the paths).
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_utimensat,
    libc::SYS_fadvise64,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_shutdown,
    // Connections on the listening sockets it was given (`--listen`); it cannot make one.
    libc::SYS_accept4,
];

/// `ioctl` requests allowed: making a descriptor non-blocking or close-on-exec. (No terminal
/// request: `TIOCSTI` on an inherited terminal would type into the user's shell.)
const IOCTL_REQUESTS: [u64; 2] = [libc::FIONBIO, libc::FIOCLEX];

/// `prctl` options allowed: glibc reads the auxiliary vector (`PR_GET_AUXV`) as threads start,
/// threads may be named, and the allocator (mimalloc) names the memory it maps (`PR_SET_VMA`,
/// which only labels the domain's own anonymous mappings).
const PRCTL_OPTIONS: [u64; 3] = [0x4155_5856, libc::PR_SET_NAME as u64, PR_SET_VMA];

/// `prctl`'s `PR_SET_VMA` (Linux 5.17), which the `libc` crate does not name.
const PR_SET_VMA: u64 = 0x5356_4d41;

/// `setsockopt` is allowed for `TCP_NODELAY` only (set on every accepted connection).
fn setsockopt_rule() -> Result<Vec<SeccompRule>, String> {
    let equal = |index, value| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
            .map_err(|error| error.to_string())
    };
    let conditions = vec![equal(1, libc::IPPROTO_TCP as u64)?, equal(2, libc::TCP_NODELAY as u64)?];
    Ok(vec![SeccompRule::new(conditions).map_err(|error| error.to_string())?])
}

/// Rules that allow a call only if its first argument (`arg_index`) is one of `values`.
fn first_argument_in(values: &[u64], arg_index: u8) -> Result<Vec<SeccompRule>, String> {
    values
        .iter()
        .map(|&value| {
            let condition =
                SeccompCondition::new(arg_index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                    .map_err(|error| error.to_string())?;
            SeccompRule::new(vec![condition]).map_err(|error| error.to_string())
        })
        .collect()
}

/// The system calls a domain makes only while it starts, before its own filter (and none of
/// them on [`ALLOWED`]): taking its descriptors (`recvmsg`, `dup*`, `close_range`), entering
/// its namespace, limits and Landlock, applying its filter, and the runtime's start (its event
/// loop, glibc's set-up for threads); and the zygote's own: its requests (`recvmsg`) and, for
/// tests, stopping itself (`kill`). The zygote's filter allows them besides the allow-list; a
/// forked domain's own filter takes them away again.
const START_UP: &[i64] = &[
    libc::SYS_recvmsg,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_close_range,
    libc::SYS_unshare,
    libc::SYS_prlimit64,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_seccomp,
    libc::SYS_socketpair,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_rt_sigaction,
    libc::SYS_kill,
];

/// `prctl`'s `PR_SET_NO_NEW_PRIVS`, which Landlock and seccomp need first: allowed by the
/// zygote's filter (see [`START_UP`]), and taken away by a forked domain's.
const NO_NEW_PRIVILEGES: u64 = libc::PR_SET_NO_NEW_PRIVS as u64;

/// What a domain's host process has of its seccomp policy when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inherited {
    /// Nothing: it applies the whole allow-list itself (an executed domain).
    Nothing,
    /// Its zygote's filter: the allow-list and [`START_UP`]. It applies only a filter that
    /// takes [`START_UP`] away, which is much faster to apply (see `docs/domains.md`).
    ZygoteFilter,
}

/// The allow-list as a BPF program (an executed domain's).
static FILTER: std::sync::OnceLock<Result<BpfProgram, String>> = std::sync::OnceLock::new();

/// The filter that takes [`START_UP`] away, as a BPF program: built once by the zygote, before
/// it forks, so that each domain it forks only applies it.
static AFTER_START_UP: std::sync::OnceLock<Result<BpfProgram, String>> = std::sync::OnceLock::new();

/// Puts the zygote (single-threaded, before its first fork) under the allow-list and
/// [`START_UP`], which every domain it forks inherits; and builds the program that each domain
/// applies after its start. `Inherited::Nothing` if that cannot be (its domains then apply the
/// whole allow-list themselves).
pub(crate) fn restrict_zygote() -> Inherited {
    let built = AFTER_START_UP.get_or_init(after_start_up_filter).is_ok();
    let applied = built
        && allow_list(START_UP, &[NO_NEW_PRIVILEGES])
            .is_ok_and(|zygote| seccompiler::apply_filter(&zygote).is_ok());
    if applied { Inherited::ZygoteFilter } else { Inherited::Nothing }
}

/// Applies the allow-list to every thread of the process, given what it `inherited`: any other
/// system call kills it.
pub(crate) fn restrict_system_calls(
    inherited: Inherited,
    report: &mut Report,
) -> Result<(), String> {
    let (program, how) = match inherited {
        Inherited::Nothing => (FILTER.get_or_init(filter), ""),
        Inherited::ZygoteFilter => (
            AFTER_START_UP.get_or_init(after_start_up_filter),
            " (the zygote's filter, which also allows what a domain's start needs, and the \
             domain's own, which takes that away)",
        ),
    };
    let program = program.as_ref().map_err(Clone::clone)?;
    seccompiler::apply_filter_all_threads(program)
        .map_err(|error| format!("cannot apply the seccomp filter: {error}"))?;
    report.note(format!(
        "seccomp: {} system calls allowed on every thread (ioctl and prctl for two requests \
         each, setsockopt for TCP_NODELAY); any other kills the domain{how}",
        ALLOWED.len() + 3
    ));
    Ok(())
}

/// The allow-list, compiled to a BPF program.
fn filter() -> Result<BpfProgram, String> {
    allow_list(&[], &[])
}

/// The allow-list and `more` calls, with `more_prctl_options`, compiled to a BPF program.
fn allow_list(more: &[i64], more_prctl_options: &[u64]) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().chain(more).map(|&call| (call, Vec::new())).collect();
    rules.insert(libc::SYS_ioctl, first_argument_in(&IOCTL_REQUESTS, 1)?);
    let prctl_options: Vec<u64> = PRCTL_OPTIONS.iter().chain(more_prctl_options).copied().collect();
    rules.insert(libc::SYS_prctl, first_argument_in(&prctl_options, 0)?);
    rules.insert(libc::SYS_setsockopt, setsockopt_rule()?);
    compile(rules, SeccompAction::KillProcess, SeccompAction::Allow)
}

/// The filter a domain forked by the zygote applies: it kills on [`START_UP`] and
/// `PR_SET_NO_NEW_PRIVS`, and leaves every other call to the zygote's filter.
fn after_start_up_filter() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        START_UP.iter().map(|&call| (call, Vec::new())).collect();
    rules.insert(libc::SYS_prctl, first_argument_in(&[NO_NEW_PRIVILEGES], 0)?);
    compile(rules, SeccompAction::Allow, SeccompAction::KillProcess)
}

/// `rules` as a BPF program for this machine: calls that match them get `matched`, others
/// `mismatched`.
fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatched: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|error| format!("no seccomp filter for this machine: {error}"))?;
    let filter = SeccompFilter::new(rules, mismatched, matched, arch)
        .map_err(|error| format!("cannot build the seccomp filter: {error}"))?;
    BpfProgram::try_from(filter)
        .map_err(|error| format!("cannot compile the seccomp filter: {error}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_up_calls_are_not_on_the_allow_list_so_a_forked_domain_ends_with_the_allow_list() {
        for call in super::START_UP {
            assert!(!super::ALLOWED.contains(call), "{call} is on both lists");
            assert!(![libc::SYS_ioctl, libc::SYS_prctl, libc::SYS_setsockopt].contains(call));
        }
        assert!(!super::PRCTL_OPTIONS.contains(&super::NO_NEW_PRIVILEGES));
        assert!(super::after_start_up_filter().is_ok() && super::filter().is_ok());
    }
}
