//! `nebulet run` against hostile programs, as a user runs it: the command exits as soon as the
//! first process ends, whatever another does; stdin loses no byte to a killed reader; a stdout
//! nobody reads stalls only the processes that write to it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A bound that turns a hang into a failure (not the goal, which is 100 ms: see the printout).
const SAFETY_NET: Duration = Duration::from_secs(10);

/// `bytes` as the inside of a wat string.
fn escaped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| match byte {
            b' '..=b'~' if byte != b'"' && byte != b'\\' => char::from(byte).to_string(),
            _ => format!("\\{byte:02x}"),
        })
        .collect()
}

/// A child that tells its parent "ready" on its bootstrap channel, then runs `body`, with
/// `data` at address 1024.
fn child(imports: &str, body: &str, data: &[u8]) -> String {
    let pages = (1024 + data.len()) / 65_536 + 1;
    format!(
        r#"(module
          (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
          (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
          {imports}
          (memory (export "memory") {pages})
          (data (i32.const 16) "r")
          (data (i32.const 1024) "{data}")
          (func (export "_start")
            (if (call $bootstrap (i32.const 0)) (then unreachable))
            (if (call $write (i32.load (i32.const 0)) (i32.const 16) (i32.const 1) (i32.const 0) (i32.const 0))
              (then unreachable))
            {body}))"#,
        data = escaped(data)
    )
}

/// A first process that starts `child`, waits for its "ready", then runs `body`; `$child` is
/// at address 12. It has the WASI imports `$fd_write`, `$fd_read`, `$stat` and `$exit`.
fn parent(child: &str, body: &str) -> String {
    parent_of_many(child, 1, body)
}

/// [`parent`] with `count` children of `child` (the last one's handle at address 12).
fn parent_of_many(child: &str, count: usize, body: &str) -> String {
    let pages = (4096 + child.len()) / 65_536 + 1;
    format!(
        r#"(module
          (import "nebulet" "channel_create" (func $channel (param i32 i32) (result i32)))
          (import "nebulet" "module_compile" (func $compile (param i32 i32 i32) (result i32)))
          (import "nebulet" "process_create" (func $create (param i32 i32 i32 i32) (result i32)))
          (import "nebulet" "process_start" (func $start (param i32 i32) (result i32)))
          (import "nebulet" "process_kill" (func $kill (param i32) (result i32)))
          (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
          (import "nebulet" "nanosleep" (func $sleep (param i64) (result i32)))
          (import "nebulet" "clock_monotonic" (func $now (result i64)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_filestat_get"
            (func $stat (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") {pages})
          (data (i32.const 64) "child")
          (data (i32.const 4096) "{text}")
          ;; Writes `length` bytes at `address` to `fd`.
          (func $write_to (param $fd i32) (param $address i32) (param $length i32)
            (i32.store (i32.const 32) (local.get $address))
            (i32.store (i32.const 36) (local.get $length))
            (drop (call $fd_write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40))))
          ;; Writes `length` bytes at `address` to stdout.
          (func $print (param $address i32) (param $length i32)
            (call $write_to (i32.const 1) (local.get $address) (local.get $length)))
          (func (export "_start") (local $started i32)
            (if (call $compile (i32.const 4096) (i32.const {length}) (i32.const 8)) (then unreachable))
            (loop $start_one
              (if (call $channel (i32.const 0) (i32.const 4)) (then unreachable))
              (if (call $create (i32.load (i32.const 8)) (i32.const 64) (i32.const 5) (i32.const 12))
                (then unreachable))
              (if (call $start (i32.load (i32.const 12)) (i32.load (i32.const 4))) (then unreachable))
              (if (call $wait (i32.load (i32.const 0)) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 16))
                (then unreachable))
              (local.set $started (i32.add (local.get $started) (i32.const 1)))
              (br_if $start_one (i32.lt_u (local.get $started) (i32.const {count}))))
            {body}))"#,
        text = escaped(child.as_bytes()),
        length = child.len()
    )
}

/// A body that prints "exiting" and ends the first process with code 7.
const EXIT_SEVEN: &str = r#"
    (i64.store (i32.const 128) (i64.const 0x0a676e6974697865))
    (call $print (i32.const 128) (i32.const 8))
    (call $exit (i32.const 7))"#;

fn write_program(name: &str, text: &str) -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("nebulet-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn start(program: &std::path::Path, arguments: &[&str]) -> Child {
    super::nebulet_command()
        .arg("run")
        .args(arguments)
        .arg(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What `work` returns, if it returns within [`SAFETY_NET`]; if not, kills the host process
/// `pid` and fails with `what`.
fn within_safety_net<T: Send + 'static>(
    pid: u32,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(work()));
    receiver.recv_timeout(SAFETY_NET).unwrap_or_else(|_| {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("{what} did not happen within {SAFETY_NET:?}");
    })
}

/// Waits (at most [`SAFETY_NET`]) for `child` to end; kills it if it does not.
fn wait_for_exit(mut child: Child) -> std::process::ExitStatus {
    within_safety_net(child.id(), "the exit", move || child.wait().unwrap())
}

/// The next line of `reader` (of host process `pid`), waiting at most [`SAFETY_NET`].
fn next_line<R: std::io::Read + Send + 'static>(
    pid: u32,
    mut reader: BufReader<R>,
) -> (String, BufReader<R>) {
    within_safety_net(pid, "the next line", move || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
}

/// Runs a parent of `child` that exits once the child is ready; asserts `nebulet run` exits
/// with the parent's code (and prints how soon after the parent's last line).
fn exits_promptly(name: &str, child: &str) {
    let program = write_program(&format!("{name}.wat"), &parent(child, EXIT_SEVEN));
    let mut running = start(&program, &[]);
    let stdin = running.stdin.take();
    let stdout = BufReader::new(running.stdout.take().unwrap());
    let (line, _stdout) = next_line(running.id(), stdout);
    let last_line = Instant::now();
    assert_eq!(line, "exiting\n");
    let status = wait_for_exit(running);
    let elapsed = last_line.elapsed();
    drop(stdin);
    println!("{name}: exited {elapsed:?} after the first process's last line");
    assert_eq!(status.code(), Some(7), "{name}");
}

#[test]
fn run_exits_while_another_process_spins() {
    exits_promptly("spinner", &child("", "(loop $spin (br $spin))", &[]));
}

#[test]
fn run_exits_while_another_process_waits_for_stdin() {
    let imports = r#"(import "wasi_snapshot_preview1" "fd_read"
        (func $fd_read (param i32 i32 i32 i32) (result i32)))"#;
    let body = "(i32.store (i32.const 32) (i32.const 64))
        (i32.store (i32.const 36) (i32.const 64))
        (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))";
    exits_promptly("reader", &child(imports, body, &[]));
}

/// A valid module of `count` empty functions, which takes the compiler seconds.
fn many_functions(count: u32) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection};
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut body = Function::new_with_locals_types([]);
    body.instruction(&Instruction::End);
    let (mut functions, mut code) = (FunctionSection::new(), CodeSection::new());
    for _ in 0..count {
        functions.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    module.finish()
}

#[test]
fn run_exits_while_another_process_is_inside_a_long_call() {
    let imports = r#"(import "nebulet" "module_compile"
        (func $compile (param i32 i32 i32) (result i32)))"#;
    let module = many_functions(100_000);
    let body = format!(
        "(drop (call $compile (i32.const 1024) (i32.const {}) (i32.const 8)))",
        module.len()
    );
    exits_promptly("compiler", &child(imports, &body, &module));
}

/// The number of the `read` system call, as `/proc/PID/task/TID/syscall` shows it.
#[cfg(target_arch = "x86_64")]
const READ_SYSCALL: &str = "0";
#[cfg(target_arch = "aarch64")]
const READ_SYSCALL: &str = "63";

/// Waits until a thread of host process `pid` is blocked reading its stdin (fd 0).
fn wait_until_reading_stdin(pid: u32) {
    let blocked = format!("{READ_SYSCALL} 0x0 ");
    let start = Instant::now();
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let reading = tasks.flatten().any(|task| {
            std::fs::read_to_string(task.path().join("syscall"))
                .is_ok_and(|syscall| syscall.starts_with(&blocked))
        });
        if reading {
            return;
        }
        if start.elapsed() > SAFETY_NET {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("nebulet never read its stdin");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_killed_reader_leaves_its_line_of_stdin_to_the_next_reader() {
    let imports = r#"(import "wasi_snapshot_preview1" "fd_read"
        (func $fd_read (param i32 i32 i32 i32) (result i32)))"#;
    // The child reads stdin and would say what it got (it never gets anything: it is killed).
    let reader = child(
        imports,
        "(i32.store (i32.const 32) (i32.const 64))
         (i32.store (i32.const 36) (i32.const 64))
         (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))
         unreachable",
        &[],
    );
    // Once the file `go` exists, the parent kills its child, says "killed", reads a line of
    // stdin and prints it.
    let body = r#"
        (i32.store (i32.const 200) (i32.const 0x6f67))
        (block $found
          (loop $poll
            (br_if $found
              (i32.eqz (call $stat (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 2) (i32.const 256))))
            (drop (call $sleep (i64.add (call $now) (i64.const 1000000))))
            (br $poll)))
        (if (call $kill (i32.load (i32.const 12))) (then unreachable))
        (if (call $wait (i32.load (i32.const 12)) (i32.const 16) (i64.const 0x7fffffffffffffff) (i32.const 16))
          (then unreachable))
        (i64.store (i32.const 128) (i64.const 0x0a64656c6c696b))
        (call $print (i32.const 128) (i32.const 7))
        (i32.store (i32.const 32) (i32.const 512))
        (i32.store (i32.const 36) (i32.const 64))
        (if (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)) (then unreachable))
        (call $print (i32.const 512) (i32.load (i32.const 40)))
        (call $exit (i32.const 0))"#;
    let program = write_program("stdin.wat", &parent(&reader, body));
    let directory = program.parent().unwrap().join("stdin-go");
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    let mut running = start(&program, &["--dir", directory.to_str().unwrap()]);
    let mut stdin = running.stdin.take().unwrap();
    let stdout = BufReader::new(running.stdout.take().unwrap());
    // The child waits in the OS's read of stdin: then the parent may kill it.
    wait_until_reading_stdin(running.id());
    std::fs::write(directory.join("go"), b"").unwrap();
    let (line, stdout) = next_line(running.id(), stdout);
    assert_eq!(line, "killed\n");
    // The line comes after the reader died, to the read the dead reader started.
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    let pid = running.id();
    let status = wait_for_exit(running);
    let (line, _) = next_line(pid, stdout);
    assert_eq!(line, "hello\n", "the parent got the line");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_stdout_nobody_reads_stalls_only_its_writers() {
    let imports = r#"(import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;
    // Each child writes 64 KiB to stdout, forever.
    let flood = "(i32.store (i32.const 32) (i32.const 1024))
        (i32.store (i32.const 36) (i32.const 65536))
        (loop $flood
          (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
          (br $flood))";
    let flooder = child(imports, flood, &[b'x'; 65_536]);
    // Meanwhile the parent sleeps 20 times (each needs a worker) and says "done" on stderr.
    let body = r#"
        (local.set $started (i32.const 0))
        (loop $nap
          (drop (call $sleep (i64.add (call $now) (i64.const 1000000))))
          (local.set $started (i32.add (local.get $started) (i32.const 1)))
          (br_if $nap (i32.lt_u (local.get $started) (i32.const 20))))
        (i64.store (i32.const 128) (i64.const 0x0a656e6f64))
        (call $write_to (i32.const 2) (i32.const 128) (i32.const 5))
        (call $exit (i32.const 7))"#;
    // As many flooders as workers: with blocking writes, every worker would be stuck.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let program = write_program("flood.wat", &parent_of_many(&flooder, cores, body));
    let mut running = start(&program, &[]);
    let stdin = running.stdin.take();
    let stderr = BufReader::new(running.stderr.take().unwrap());
    // Nobody reads stdout until the parent is done.
    let (line, _stderr) = next_line(running.id(), stderr);
    assert_eq!(line, "done\n");
    let mut stdout = running.stdout.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let status = wait_for_exit(running);
    drop(stdin);
    assert_eq!(status.code(), Some(7));
}
