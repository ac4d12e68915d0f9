//! `nebulet ps` and `nebulet top` over a command's control socket: the columns a user sees, with
//! real states, restarts and domains.
//!
//! A listing is a snapshot of processes that move on by themselves, so a test that needs a
//! process in a state it is heading to (blocked in its sleep, say) asks again until it is there:
//! it waits for the state, never for a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::write_temporary;

fn nebulet() -> Command {
    super::nebulet_command()
}

/// Prints `ready`, then sleeps until it is killed.
const READY_THEN_SLEEPS: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "ready\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 6))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (drop (call $sleep (i64.const 0x7fffffffffffffff)))))"#;

/// Prints `ready`, then spins until it is killed (it never blocks).
const READY_THEN_SPINS: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "ready\n")
    (func (export "_start")
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 6))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (loop $forever (br $forever))))"#;

/// Starts `nebulet run --control SOCKET` of [`READY_THEN_SLEEPS`] as `name` and waits until the
/// process runs: once it has printed, the socket (opened before) exists.
fn run_with_control(name: &str, socket_name: &str) -> (Child, PathBuf) {
    run_program_with_control(name, READY_THEN_SLEEPS, socket_name)
}

/// [`run_with_control`] of the program `text`.
fn run_program_with_control(name: &str, text: &str, socket_name: &str) -> (Child, PathBuf) {
    let program = write_temporary(&format!("{name}.wat"), text);
    let socket = program.with_file_name(socket_name);
    let mut child = nebulet()
        .arg("run")
        .arg("--control")
        .arg(&socket)
        .arg(&program)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, socket)
}

/// The JSON listing of the command whose control socket is `socket`, asked as `ps --json` asks.
fn listing(socket: &Path) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(b"json\n").unwrap();
    let mut json = String::new();
    stream.read_to_string(&mut json).unwrap();
    json
}

/// The JSON object of the process named `name` in a listing, if it is listed.
fn object<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("\"name\":\"{name}\",");
    json.split("},{").find(|object| object.contains(&needle))
}

/// Asks for the listing until the process named `name` is listed with every one of `fields`
/// (JSON members such as `"state":"blocked"`), and returns that listing.
fn listed_with(socket: &Path, name: &str, fields: &[&str]) -> String {
    listed_when(socket, name, |found| fields.iter().all(|field| found.contains(field)))
}

/// Asks for the listing until the JSON object of the process named `name` satisfies `done`, and
/// returns that listing. The process must get there by itself; the bound only keeps a broken
/// build from hanging the test run.
fn listed_when(socket: &Path, name: &str, done: impl Fn(&str) -> bool) -> String {
    let bound = Instant::now() + Duration::from_secs(120);
    loop {
        let json = listing(socket);
        if object(&json, name).is_some_and(&done) {
            return json;
        }
        assert!(Instant::now() < bound, "{name} never listed as expected: {json}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ps_lists_the_processes_of_a_command_with_a_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    let (mut child, socket) = run_with_control("sleeper", "control.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only this user may connect");
    // It printed, so it is in its sleep or about to be: wait until it is blocked there.
    listed_with(&socket, "sleeper", &["\"state\":\"blocked\""]);
    let table = nebulet().args(["ps", "--control"]).arg(&socket).output().unwrap();
    let json = nebulet().args(["ps", "--json", "--control"]).arg(&socket).output().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(table.status.code(), Some(0), "{table:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].split_whitespace().eq(COLUMNS), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[1..4], ["sleeper", "blocked:sleep", "1"], "{table}");
    assert_eq!(row[8..], ["0", "local"], "{table}");
    let json = String::from_utf8(json.stdout).unwrap();
    assert!(json.starts_with("[{\"id\":"), "{json}");
    assert!(
        json.contains(
            ",\"name\":\"sleeper\",\"state\":\"blocked\",\"blocked_on\":\"sleep\",\"threads\":1,\
             \"cpu_nanoseconds\":"
        ),
        "{json}"
    );
    assert!(json.ends_with(",\"restarts\":0,\"domain\":\"local\"}]\n"), "{json}");
    // Nothing listens any more: ps says so on one line.
    let gone = nebulet().args(["ps", "--control"]).arg(&socket).output().unwrap();
    assert_eq!(gone.status.code(), Some(1));
    let stderr = String::from_utf8(gone.stderr).unwrap();
    assert!(stderr.starts_with("nebulet: cannot reach "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_process_that_never_blocks_is_listed_running_or_ready() {
    let (mut child, socket) = run_program_with_control("spinner", READY_THEN_SPINS, "spin.sock");
    // Its write may still be finishing: once it is in its loop, it is never listed blocked.
    let in_loop = |spinner: &str| {
        spinner.contains("\"state\":\"running\"") || spinner.contains("\"state\":\"ready\"")
    };
    listed_when(&socket, "spinner", in_loop);
    for _ in 0..50 {
        let json = listing(&socket);
        let spinner = object(&json, "spinner").expect("the spinner is listed");
        assert!(in_loop(spinner), "{json}");
        assert!(spinner.contains("\"blocked_on\":null"), "{json}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A demo system whose manifest keeps `echo` running as a task (it serves forever, so init
/// never finishes) and restarts `crash`, which traps every time, once.
const ONE_RESTART: &str = "start echo\nstart crash restart=on-failure restarts=1/3600s\n";

#[test]
fn ps_shows_blocked_exited_and_restarted_processes_of_the_demo() {
    let manifest = write_temporary("one-restart.manifest", ONE_RESTART);
    let socket = manifest.with_file_name("demo.sock");
    let mut demo = nebulet()
        .args(["demo", "--manifest"])
        .arg(&manifest)
        .arg("--control")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut console = BufReader::new(demo.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("giving up") {
        assert_ne!(console.read_line(&mut printed).unwrap(), 0, "the demo ended: {printed}");
    }
    // Init gave up on crash after its one restart: that run has ended, and init still holds it.
    let json = listed_with(&socket, "crash", &["\"state\":\"exited\""]);
    let crash = object(&json, "crash").unwrap();
    assert!(crash.contains("\"restarts\":1,\"domain\":\"local\""), "{json}");
    assert!(crash.contains("\"threads\":0,"), "{json}");
    // Init waits for its tasks' ends, and echo for clients.
    for name in ["init", "echo"] {
        let json = listed_with(&socket, name, &["\"state\":\"blocked\""]);
        let found = object(&json, name).unwrap();
        assert!(found.contains("\"blocked_on\":\"wait\""), "{json}");
        assert!(found.contains("\"restarts\":0,"), "{json}");
    }
    let _ = demo.kill();
    let _ = demo.wait();
}

#[test]
fn top_shows_the_table_until_the_command_ends() {
    let (mut watched, socket) = run_with_control("watched", "top.sock");
    let mut top = nebulet()
        .args(["top", "--interval", "50ms", "--control"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Not a terminal: tables one after another, until the process shows blocked in its sleep.
    let mut output = BufReader::new(top.stdout.take().unwrap());
    let mut header = String::new();
    output.read_line(&mut header).unwrap();
    assert!(header.split_whitespace().eq(COLUMNS), "{header}");
    let row = loop {
        let mut line = String::new();
        assert_ne!(output.read_line(&mut line).unwrap(), 0, "top ended early");
        let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if cells.get(2).is_some_and(|state| state == "blocked:sleep") {
            break cells;
        }
    };
    assert_eq!(row[1], "watched", "{row:?}");
    assert_eq!(row[8..], ["0", "local"], "{row:?}");
    // When the command ends, so does top, saying so.
    let _ = watched.kill();
    let _ = watched.wait();
    let mut rest = String::new();
    output.read_to_string(&mut rest).unwrap();
    let status = top.wait().unwrap();
    let mut stderr = String::new();
    top.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, format!("nebulet: {}: the command ended\n", socket.display()));
}

/// The column titles, as the tests expect them.
const COLUMNS: [&str; 10] =
    ["ID", "NAME", "STATE", "THREADS", "CPU", "MEMORY", "HANDLES", "QUEUED", "RESTARTS", "DOMAIN"];
