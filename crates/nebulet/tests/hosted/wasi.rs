//! WASI preview 1 through real programs: `wasi-std` (apps/tests/wasi-std, plain Rust std) and
//! `wasi-c` (apps/tests/wasi-c, C with wasi-libc), with host directories preopened through
//! `nebulet_hosted::HostDirectory`, in-process and through the `nebulet run` command; and the
//! rights rules through `wasi-rights` ([`rights`]).

mod rights;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nebulet_abi::ExitReason;
use nebulet_hosted::{ExitStatus, HostDirectory, ProcessOptions};
use nebulet_kernel::vfs::Directory;

use crate::System;

/// The name the programs see their directory under.
const GUEST: &str = "/sandbox";

/// A fresh host directory for one test, removed when the test ends: `sandbox/` inside it is
/// what the program gets; the rest is outside its reach.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "nebulet-wasi-{}-{test}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("sandbox")).expect("cannot create the scratch directory");
        Self { path }
    }

    fn sandbox(&self) -> PathBuf {
        self.path.join("sandbox")
    }

    /// The preopen of `sandbox/` as `/sandbox`.
    fn preopens(&self) -> nebulet_kernel::vfs::Preopens {
        let directory = HostDirectory::open(&self.sandbox()).expect("the sandbox opens");
        vec![(GUEST.into(), Arc::new(directory) as Arc<dyn Directory>)]
    }

    /// A module file on the host, for the `nebulet` command.
    fn module_file(&self, name: &str) -> PathBuf {
        let path = self.path.join(format!("{name}.wasm"));
        let bytes = nebulet::image::find(name).unwrap_or_else(|| panic!("no program {name}"));
        std::fs::write(&path, bytes).expect("cannot write the module file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The sorted names in a host directory.
fn names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Runs `program ARGS` with the scratch sandbox preopened and `NEBULET_TEST=yes`.
fn run(system: &System, program: &str, args: &[&str], scratch: &Scratch) -> ExitStatus {
    let options = ProcessOptions {
        name: program.into(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        environment: vec!["NEBULET_TEST=yes".into()],
        preopens: scratch.preopens(),
        ..Default::default()
    };
    system.run_with(system.program(program), options)
}

/// Runs a `wasi-std` case, asserts it exits 0 and reports `ok`, and returns the console.
fn pass(case: &str, args: &[&str], scratch: &Scratch) -> String {
    let system = System::new();
    let mut all = vec![case];
    all.extend_from_slice(args);
    let status = run(&system, "wasi-std", &all, scratch);
    let console = system.console();
    assert_eq!(
        (status.code, status.reason),
        (0, ExitReason::Exited),
        "wasi-std {all:?} failed: {:?}\n--- console ---\n{console}",
        status.message
    );
    assert!(console.contains(&format!("wasi-std {case}: ok\n")), "{console}");
    console
}

#[test]
fn files_and_directories_through_std() {
    let scratch = Scratch::new("files");
    std::fs::write(scratch.sandbox().join("from-host.txt"), "made on the host").unwrap();
    let console = pass("files", &[GUEST], &scratch);
    assert!(
        console.contains("wasi-std files: listing [\"b\", \"m.txt\", \"z.txt\"]\n"),
        "{console}"
    );
    // ENOTEMPTY.
    assert!(
        console.contains("wasi-std files: remove_dir of a non-empty directory: Some(55)\n"),
        "{console}"
    );
    assert!(console.contains("wasi-std files: hard link ok\n"), "{console}");
    assert!(console.contains("wasi-std files: preopen holds [\"from-host.txt\"]\n"), "{console}");
    // The host sees what the program left, and nothing of what it removed.
    let sandbox = scratch.sandbox();
    assert_eq!(names(&sandbox), ["from-host.txt", "kept-dir", "kept.txt"]);
    assert_eq!(std::fs::read_to_string(sandbox.join("kept.txt")).unwrap(), "written by wasi-std\n");
    assert_eq!(std::fs::read_to_string(sandbox.join("kept-dir/inner.txt")).unwrap(), "inner");
    assert_eq!(std::fs::read_to_string(sandbox.join("from-host.txt")).unwrap(), "made on the host");
    assert_eq!(names(&scratch.path), ["sandbox"], "nothing was written outside the sandbox");
}

#[test]
fn many_files_written_read_and_listed() {
    let scratch = Scratch::new("many");
    let console = pass("bench", &[GUEST, "600"], &scratch);
    assert!(console.contains("wasi-std bench: 600 files: write"), "{console}");
    assert!(names(&scratch.sandbox()).is_empty(), "the program removed what it wrote");
}

#[test]
fn arguments_environment_and_exit_code() {
    let scratch = Scratch::new("env");
    let system = System::new();
    let status = run(&system, "wasi-std", &["env", "one", "two words"], &scratch);
    let console = system.console();
    assert_eq!((status.code, status.reason), (4, ExitReason::Exited), "{console}");
    assert!(
        console.contains("wasi-std env: 4 args: [\"wasi-std\", \"env\", \"one\", \"two words\"]\n"),
        "{console}"
    );
    assert!(console.contains("wasi-std env: NEBULET_TEST=yes\n"), "{console}");
    assert!(console.contains("wasi-std env: ok\n"), "{console}");

    // No environment at all.
    let system = System::new();
    let options =
        ProcessOptions { name: "wasi-std".into(), args: vec!["env".into()], ..Default::default() };
    let status = system.run_with(system.program("wasi-std"), options);
    let console = system.console();
    assert_eq!(status.code, 2, "{console}");
    assert!(
        console.contains("wasi-std env: NEBULET_TEST environment variable not found\n"),
        "{console}"
    );
}

#[test]
fn exit_codes() {
    let scratch = Scratch::new("exit");
    let system = System::new();
    for code in [0, 3, 255, 1000] {
        let status = run(&system, "wasi-std", &["exit", &code.to_string()], &scratch);
        assert_eq!(
            (status.code, status.reason),
            (code, ExitReason::Exited),
            "{}",
            system.console()
        );
    }
}

#[test]
fn clocks() {
    let scratch = Scratch::new("clock");
    pass("clock", &[], &scratch);
}

#[test]
fn random_differs_between_processes() {
    let scratch = Scratch::new("random");
    let value = |console: String| {
        console
            .lines()
            .find_map(|line| line.strip_prefix("wasi-std random: "))
            .unwrap_or_else(|| panic!("no random value: {console}"))
            .to_string()
    };
    let first = value(pass("random", &[], &scratch));
    let second = value(pass("random", &[], &scratch));
    assert_ne!(first, second, "two processes drew the same random keys");
}

#[test]
fn stdin_of_a_captured_console_is_empty() {
    let scratch = Scratch::new("stdio-captured");
    let console = pass("stdio", &[], &scratch);
    assert_eq!(console, "done\nwasi-std stdio: ok\n");
}

/// The `nebulet` command.
fn nebulet() -> Command {
    super::nebulet_command()
}

/// Runs a command with `input` on its stdin.
fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nebulet starts");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).expect("writing the program's stdin");
    });
    let output = child.wait_with_output().expect("nebulet ends");
    writer.join().unwrap();
    output
}

#[test]
fn stdio_through_the_command() {
    let scratch = Scratch::new("stdio");
    let module = scratch.module_file("wasi-std");
    let mut command = nebulet();
    command.arg("run").arg(&module).args(["--", "stdio"]);
    let output = run_with_input(command, b"hello nebulet\nline two\n");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "HELLO NEBULET\nLINE TWO\nwasi-std stdio: ok\n");
    assert_eq!(stderr, "done\n");

    // More than one read's worth, and binary-safe apart from the letters.
    let input: Vec<u8> = (0..300_000u32).map(|index| (index % 251) as u8).collect();
    let mut command = nebulet();
    command.arg("run").arg(&module).args(["--", "stdio"]);
    let output = run_with_input(command, &input);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let mut expected = input.to_ascii_uppercase();
    expected.extend_from_slice(b"wasi-std stdio: ok\n");
    assert!(output.stdout == expected, "stdout differs ({} bytes)", output.stdout.len());
}

#[test]
fn the_command_preopens_dir_host_as_guest_and_sets_env() {
    let scratch = Scratch::new("cli");
    let module = scratch.module_file("wasi-std");
    let output = nebulet()
        .arg("run")
        .arg(format!("--dir={}::/data", scratch.sandbox().display()))
        .arg(&module)
        .args(["--", "files", "/data"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.ends_with("wasi-std files: ok\n"), "{stdout}");
    let kept = std::fs::read_to_string(scratch.sandbox().join("kept.txt")).unwrap();
    assert_eq!(kept, "written by wasi-std\n");

    // `--dir HOST`: the guest name is the host path as written.
    let host = scratch.path.join("plain");
    std::fs::create_dir(&host).unwrap();
    let host_name = host.to_str().unwrap();
    let output = nebulet()
        .arg("run")
        .args(["--dir", host_name])
        .arg(&module)
        .args(["--", "files", host_name])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(host.join("kept-dir/inner.txt").exists());

    // `--env`, and arguments after `--`.
    let output = nebulet()
        .arg("run")
        .args(["--env", "NEBULET_TEST=from the command", "--env", "OTHER=1"])
        .arg(&module)
        .args(["--", "env", "x"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("wasi-std env: 3 args: [\"wasi-std\", \"env\", \"x\"]\n"), "{stdout}");
    assert!(stdout.contains("wasi-std env: NEBULET_TEST=from the command\n"), "{stdout}");

    // Without `--dir` the program has no files.
    let output = nebulet().arg("run").arg(&module).args(["--", "files", "/data"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("metadata of the preopen failed: No such file or directory (os error 44)"),
        "{stderr}"
    );

    // A directory that does not exist is the command's error, before anything runs.
    let output = nebulet()
        .arg("run")
        .args(["--dir", "/no/such/directory::/x"])
        .arg(&module)
        .args(["--", "exit", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("nebulet: cannot open directory /no/such/directory"), "{stderr}");
}

/// The errno each escape attempt of `wasi-std escape` reported, by attempt.
fn escape_results(console: &str) -> Vec<(String, String)> {
    console
        .lines()
        .filter_map(|line| line.strip_prefix("wasi-std escape: "))
        .filter_map(|rest| {
            let (what, outcome) = rest.split_once(": ")?;
            let errno = outcome.split_whitespace().next()?;
            Some((what.to_string(), errno.to_string()))
        })
        .collect()
}

#[test]
fn paths_cannot_leave_the_preopened_directory() {
    let scratch = Scratch::new("escape");
    std::fs::write(scratch.path.join("outside"), "secret").unwrap();
    let console = pass("escape", &[GUEST], &scratch);
    // EPERM (63) for every path that leads out, whether by `..` or through a symlink (as
    // wasi-common and wasmtime, and the official WASI test suite, have it).
    // A symlink to an absolute path is refused when made (cap-std could never follow it), so
    // going through it finds nothing (ENOENT, 44). An absolute path outside every preopen never
    // reaches the kernel: wasi-libc finds no preopen for it and fails with ENOENT (44) itself.
    let expected = [
        ("parent", "63"),
        ("parent via sub", "63"),
        ("create in parent", "63"),
        ("metadata of parent", "63"),
        ("list parent", "63"),
        ("absolute", "44"),
        ("symlink up", "created"),
        ("through up", "63"),
        ("list through up", "63"),
        ("symlink root", "refused"),
        ("through root", "44"),
        ("symlink file", "created"),
        ("through file link", "63"),
        ("write through file link", "63"),
        ("rename out", "63"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(what, errno)| (what.to_string(), errno.to_string())).collect();
    assert_eq!(escape_results(&console), expected, "{console}");
    assert_eq!(std::fs::read_to_string(scratch.path.join("outside")).unwrap(), "secret");
    assert_eq!(names(&scratch.path), ["outside", "sandbox"], "nothing was made outside");
    assert!(scratch.sandbox().join("sub").is_dir(), "the refused rename left sub in place");
}

#[test]
#[cfg_attr(
    nebulet_no_c_program,
    ignore = "the C test program wasi-c was not built: no clang or \
    wasi-libc when the nebulet crate was built (apt-get install clang lld wasi-libc \
    libclang-rt-14-dev-wasm32)"
)]
fn a_c_program_through_wasi_libc() {
    let bytes =
        nebulet::image::find("wasi-c").expect("build.rs builds wasi-c or marks this ignored");
    let scratch = Scratch::new("c");
    std::fs::write(scratch.sandbox().join("host.txt"), "from the host").unwrap();
    std::fs::create_dir(scratch.sandbox().join("a-dir")).unwrap();
    let system = System::new();
    let options = ProcessOptions {
        name: "wasi-c".into(),
        args: vec![GUEST.into(), "second".into()],
        environment: vec!["NEBULET_TEST=yes".into()],
        preopens: scratch.preopens(),
        ..Default::default()
    };
    let status = system.run_with(system.module(bytes), options);
    let console = system.console();
    assert_eq!((status.code, status.reason), (42, ExitReason::Exited), "{status:?}\n{console}");
    assert_eq!(
        console,
        "wasi-c: argc=3\n\
         wasi-c: argv[1]=/sandbox\n\
         wasi-c: argv[2]=second\n\
         wasi-c: NEBULET_TEST=yes\n\
         wasi-c: read back 18 bytes\n\
         wasi-c: entries: a-dir from-c.txt host.txt\n\
         wasi-c: clocks ok\n\
         wasi-c: ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.sandbox().join("from-c.txt")).unwrap(),
        "written by wasi-c\n"
    );
}
