//! Nebulet on bare metal: boots the kernel and its system image under QEMU with xtask's `qemu`
//! task (the kernel built in the `quick` profile) and checks what the system printed on its
//! serial port.
//!
//! The image and the kernel are built once, before the first boot, with their build's output
//! shown (it takes minutes on a clean tree); each boot then reuses them (xtask caches the
//! precompiled apps). Needs `qemu-system-x86_64`: without it each test says on the terminal
//! that it is skipped, and passes, except where the environment variable CI is set (`.ci/run`
//! installs QEMU): there they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock, PoisonError};

const QEMU: &str = "qemu-system-x86_64";

/// The smallest machine the tests boot: 16 MiB, a little above the demo's floor (14 MiB,
/// docs/metal.md), so that the processes' timing cannot decide whether the demo fits.
const SMALL_MACHINE: &str = "16M";

/// One boot at a time: each is timed by the kernel, and the machine may have two cores.
static ONE_BOOT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lies in the root").to_path_buf()
}

/// Writes straight to the terminal: the test harness captures `eprintln!`, not this.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Whether QEMU is installed (panics if it is not where CI is set), and, the first time it
/// is, builds the image and the kernel with their output shown.
fn ready(test: &str) -> bool {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let installed =
        Command::new(QEMU).arg("--version").output().is_ok_and(|output| output.status.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "{QEMU} is not installed, and CI is set: the bare-metal tests must run there \
             (.ci/run installs it: apt-get install qemu-system-x86)"
        );
        say(&format!(
            "note: {test} SKIPPED: {QEMU} is not installed (on Debian or Ubuntu: \
             apt-get install qemu-system-x86)"
        ));
        return false;
    }
    let built = BUILT.get_or_init(|| {
        let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        say("note: building the bare-metal image and kernel once for the QEMU tests");
        xtask_qemu_command().arg("--build-only").status().is_ok_and(|status| status.success())
    });
    assert!(built, "cargo xtask qemu --build-only failed (its output is above)");
    true
}

/// `xtask qemu --profile quick`, from the repository root, ready for more arguments.
///
/// The xtask binary that `cargo test --workspace` built for this test, not `cargo run --package
/// xtask`: that one resolves features for xtask alone, so on a fresh clone it would build
/// wasmtime and Cranelift a second time. And the kernel in the `quick` profile, built in about
/// a third of release's time: these tests check what the system does, not how fast.
fn xtask_qemu_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(["qemu", "--profile", "quick"]).env("CARGO", env!("CARGO")).current_dir(root());
    command
}

/// `cargo xtask qemu ARGUMENTS...` from the repository root: its exit status and everything it
/// printed (the build steps and the kernel's serial output).
fn xtask_qemu(arguments: &[&str]) -> (Output, String) {
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let output = xtask_qemu_command().args(arguments).output().expect("cannot run cargo");
    let console = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, console)
}

/// A manifest file for one test, in the test's scratch folder.
fn manifest(name: &str, text: &str) -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.manifest"));
    std::fs::write(&path, text).expect("cannot write the manifest");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn assert_printed(console: &str, lines: &[&str]) {
    for line in lines {
        assert!(console.contains(line), "the system did not print {line:?}:\n{console}");
    }
}

/// The demo, on a machine of 16 MiB: the heap is sized from the memory map, the apps run in
/// place from the image.
#[test]
fn the_demo_system_runs_on_a_small_bare_metal_machine() {
    if !ready("the_demo_system_runs_on_a_small_bare_metal_machine") {
        return;
    }
    let (output, console) = xtask_qemu(&["--memory", SMALL_MACHINE]);
    assert!(output.status.success(), "cargo xtask qemu failed ({}):\n{console}", output.status);
    assert_printed(
        &console,
        &[
            "init: started service echo",
            "hello from nebulet",
            "ping: 1000 round trips",
            "init: hang ended: watchdog",
            "init: all",
            "nebulet-metal: init exited with code 0",
        ],
    );
}

/// On the small machine, an app that traps ends alone, and a thousand processes that do not
/// fit are refused with ERR_NO_RESOURCES instead of failing an allocation and stopping the
/// kernel: the other apps run on.
#[test]
fn a_trap_and_running_out_of_heap_do_not_stop_the_bare_metal_kernel() {
    if !ready("a_trap_and_running_out_of_heap_do_not_stop_the_bare_metal_kernel") {
        return;
    }
    let manifest = manifest("crash", "service echo\nstart crash\nstart swarm\nstart hello\n");
    let (output, console) = xtask_qemu(&["--memory", SMALL_MACHINE, "--manifest", &manifest]);
    // Tasks failed, so init exits 1 and the kernel reports a failure to QEMU: the lines say
    // whether the kernel went on after the trap and the refusal.
    assert!(!output.status.success(), "init should have exited with code 1:\n{console}");
    assert_printed(
        &console,
        &[
            "crash: about to trap",
            "init: crash ended: trapped",
            "ERR_NO_RESOURCES",
            "init: swarm exited with code 1",
            "hello from nebulet",
            "init: hello exited with code 0",
            "init: stopped service echo",
            "nebulet-metal: init exited with code 1",
            "QEMU status 35",
        ],
    );
    assert!(!console.contains("panic"), "the kernel must not panic:\n{console}");
}

/// On four cores (multi-threaded TCG) with 1 GiB: the demo, a spinner per core beside a
/// process that sleeps 1 ms 200 times (its sleeps end while the spinners hold every core, so
/// spinning processes are made to yield on every core), and the swarm's thousand processes,
/// which the heap holds.
#[test]
fn the_demo_spinners_and_a_thousand_processes_run_on_four_cores() {
    if !ready("the_demo_spinners_and_a_thousand_processes_run_on_four_cores") {
        return;
    }
    let manifest = manifest(
        "cores",
        "service echo\nservice hang restart=always restarts=2/10s\nstart hello\nstart ping\n\
         start uptime\nstart spinners\nstart swarm\n",
    );
    let arguments = ["--cpus", "4", "--memory", "1G", "--manifest", &manifest, "--timeout", "120"];
    let (output, console) = xtask_qemu(&arguments);
    assert!(output.status.success(), "cargo xtask qemu failed ({}):\n{console}", output.status);
    assert_printed(
        &console,
        &[
            "cpus: 4 online",
            "hello from nebulet",
            "ping: 1000 round trips",
            "init: hang ended: watchdog",
            "spinners: 4 spinners, 200 sleeps of 1 ms",
            "spinners: ok",
            "swarm: 1000 workers, 10000 messages, 0 lost, 0 duplicated",
            "nebulet-metal: init exited with code 0",
        ],
    );
}

/// `cargo xtask qemu --serve`: a process group running xtask and QEMU, stopped when dropped.
struct Server {
    child: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole group: xtask and QEMU.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Sends `request` (a whole HTTP/1.1 request) to the port; the status and the response.
fn http(port: u16, request: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {response:?}")))?;
    Ok((status, response))
}

fn get(port: u16, target: &str) -> (u16, String) {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    http(port, &request).unwrap_or_else(|error| panic!("GET {target}: {error}"))
}

/// Builds a test program of `apps/tests` for wasm32-wasip1; its path.
fn test_program(package: &str) -> PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip1", "--package", package])
        .arg("--manifest-path")
        .arg(root().join("apps/Cargo.toml"))
        .arg("--target-dir")
        .arg(root().join("target/wasm-apps"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo");
    assert!(built.success(), "cannot build apps/tests/{package}");
    root().join(format!("target/wasm-apps/wasm32-wasip1/release/{package}.wasm"))
}

/// A free TCP port of the host (free when asked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `cargo xtask qemu --run wasi-std.wasm --listen P --listen Q --arg tcp --arg 1`: a plain WASI
/// program accepts a connection from the host on its preopened listener (descriptor 3: the
/// kernel's listener object, fed by the machine's TCP port through QEMU's forward), reads it
/// to the end and answers it in capitals; it finds no connection on the other (descriptor 4).
#[test]
fn a_program_accepts_tcp_connections_through_kernel_listeners() {
    use std::io::Read;
    if !ready("a_program_accepts_tcp_connections_through_kernel_listeners") {
        return;
    }
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let wasm = test_program("wasi-std");
    let (port, idle) = (free_port(), free_port());
    let mut command = xtask_qemu_command();
    command
        .args(["--memory", "64M"])
        .arg("--run")
        .arg(&wasm)
        .args(["--listen", &port.to_string(), "--listen", &idle.to_string()])
        .args(["--arg", "tcp", "--arg", "1", "--timeout", "300"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut server = Server { child: command.spawn().expect("cannot run cargo xtask qemu --run") };
    // The console's lines, as they come: the exchange starts once the kernel listens, however
    // long building the image and booting took (minutes on a loaded machine).
    let stdout = server.child.stdout.take().expect("piped");
    let (lines, console_lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut console = String::new();
    while !console.contains("run: listening on port 80") {
        match console_lines.recv() {
            Ok(line) => console.push_str(&(line + "\n")),
            Err(_) => panic!("the kernel never listened; its console:\n{console}"),
        }
    }
    // QEMU accepts on the forwarded port as soon as it starts, before the kernel takes
    // connections: it resets a connection that the kernel does not take, which never reaches
    // the program. So the exchange is tried until it gets through.
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        stream.write_all(b"over the network")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let answer = loop {
        match exchange() {
            Ok(answer) if !answer.is_empty() => break answer,
            _ if std::time::Instant::now() > deadline => {
                panic!("no answer within 300 s of the kernel listening")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    };
    assert_eq!(answer, "OVER THE NETWORK");
    console.extend(console_lines.iter().map(|line| line + "\n"));
    assert_printed(
        &console,
        &[
            "run: listening on port 80 (descriptor 3)",
            "wasi-std tcp: ok",
            "nebulet-metal: wasi-std exited with code 0",
            "QEMU status 33",
        ],
    );
}

/// `cargo xtask qemu --serve wagi.wasm --port P`: the WAGI test handler (`apps/tests/wagi`),
/// precompiled into the image, answers real HTTP requests from the host through QEMU's port
/// forward and the kernel's virtio-net driver and TCP/IP stack: its answers, and the server's
/// own failure answers.
#[test]
fn serves_http_through_a_forwarded_port() {
    if !ready("serves_http_through_a_forwarded_port") {
        return;
    }
    let _one = ONE_BOOT_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let wasm = test_program("wagi");
    let port = free_port();
    let mut command = xtask_qemu_command();
    command
        .args(["--memory", "256M"])
        .arg("--serve")
        .arg(&wasm)
        .args(["--port", &port.to_string(), "--timeout", "600"])
        .current_dir(root())
        .stdout(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let _server = Server { child: command.spawn().expect("cannot run cargo xtask qemu --serve") };
    // Up when /hello answers: the build is done, so this is the boot (a second or two).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let hello = loop {
        let request = format!("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        match http(port, &request) {
            Ok(answer) => break answer,
            Err(error) if std::time::Instant::now() > deadline => {
                panic!("the server did not answer within 300 s: {error}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    };
    assert_eq!(hello.0, 200, "{}", hello.1);
    assert!(hello.1.ends_with("\r\n\r\nHello, world!\n"), "{}", hello.1);

    let (status, environment) = get(port, "/env?first&second");
    assert_eq!(status, 200, "{environment}");
    for line in ["REQUEST_METHOD=GET", "PATH_INFO=/env", "QUERY_STRING=first&second"] {
        assert!(environment.contains(line), "no {line} in:\n{environment}");
    }
    assert!(environment.contains("ARGS=first second"), "{environment}");

    let echo = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
                Connection: close\r\n\r\nhowdy";
    let (status, echoed) = http(port, echo).expect("POST /echo");
    assert_eq!(status, 200, "{echoed}");
    assert!(echoed.ends_with("\r\n\r\nhowdy"), "{echoed}");

    assert_eq!(get(port, "/status?code=404").0, 404);
    let (status, redirect) = get(port, "/redirect");
    assert_eq!(status, 302, "{redirect}");
    assert!(redirect.to_lowercase().contains("location: /elsewhere"), "{redirect}");
    // The handler's failures: a trap, output that is not a CGI response, CPU time spent.
    assert_eq!(get(port, "/trap").0, 500);
    assert_eq!(get(port, "/garbage").0, 500);
    assert_eq!(get(port, "/spin").0, 504);
    // The server's own: a request that is not HTTP, a body larger than it takes.
    assert_eq!(http(port, "NONSENSE\r\n\r\n").expect("a malformed request").0, 400);
    let huge = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n";
    assert_eq!(http(port, huge).expect("a huge request").0, 413);
    // Still serving after all of those.
    assert_eq!(get(port, "/hello").0, 200);
}
