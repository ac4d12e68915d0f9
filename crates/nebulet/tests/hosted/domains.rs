//! Hardware protection domains (`crates/domains`): programs in a sandboxed host process of their
//! own, their bridged channels, and what a domain's end does to the rest.

use std::future::poll_fn;
use std::path::PathBuf;
use std::process::Output;

use nebulet_abi::{ExitReason, Rights};
use nebulet_domains::{Domain, DomainOptions};
use nebulet_hosted::{
    ChannelEnd, Crossed, CrossingMessage, ExitStatus, Grant, ProcessOptions, SocketEnd,
};

use crate::{PATIENCE, System};

/// A temporary directory of this test run, made empty.
fn directory(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("nebulet-domains-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// `nebulet run --isolate` of a test program, with a probe of the sandbox if given.
fn run_isolated(probe: Option<&str>, arguments: &[&str]) -> Output {
    let mut command = crate::nebulet_command();
    command.args(["run", "--isolate"]).args(arguments);
    if let Some(probe) = probe {
        command.env(nebulet_domains::PROBE_VARIABLE, probe);
    }
    command.output().unwrap()
}

fn program_file(name: &str) -> PathBuf {
    let path = directory("programs")
        .with_file_name(format!("nebulet-domains-{}-{name}.wasm", std::process::id()));
    std::fs::write(&path, nebulet::image::find(name).unwrap()).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_isolated_program_has_its_stdio_and_directories() {
    let data = directory("files");
    std::fs::write(data.join("f.txt"), "hi").unwrap();
    let program = program_file("wasi-std");
    let dir = format!("{}::/data", data.display());
    let files = run_isolated(None, &["--dir", &dir, program.to_str().unwrap(), "files", "/data"]);
    assert!(files.status.success(), "{}{}", text(&files.stdout), text(&files.stderr));
    assert!(text(&files.stdout).contains("wasi-std files: ok"), "{}", text(&files.stdout));

    let mut stdio = crate::nebulet_command();
    stdio.args(["run", "--isolate", program.to_str().unwrap(), "stdio"]);
    stdio.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = stdio.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).contains("SHOUT"), "{}", text(&output.stdout));
}

#[test]
fn an_isolated_program_cannot_open_a_host_file_it_was_not_given() {
    let given = directory("given");
    std::fs::write(given.join("inside.txt"), "yes").unwrap();
    let secret = directory("secret").join("secret.txt");
    std::fs::write(&secret, "no").unwrap();
    let program = program_file("hello");
    let dir = given.to_str().unwrap();
    // The domain's host process itself (as a compromised runtime would) tries the file outside
    // and one inside its directory: Landlock refuses the first.
    for (file, expected) in
        [(secret.clone(), "Permission denied"), (given.join("inside.txt"), "succeeded")]
    {
        let probe = format!("open:{}", file.display());
        let output = run_isolated(Some(&probe), &["--dir", dir, program.to_str().unwrap()]);
        assert!(output.status.success(), "{output:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&format!("{probe}: {expected}")), "{probe}: {stderr}");
    }
    // And the program, through WASI, cannot name it either (absolute path, `..`, links).
    let escape = run_isolated(
        None,
        &["--dir", dir, program_file("wasi-std").to_str().unwrap(), "escape", dir],
    );
    assert!(text(&escape.stdout).contains("wasi-std escape: ok"), "{escape:?}");
}

#[test]
fn an_isolated_program_cannot_reach_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let program = program_file("hello");
    let probe = format!("connect:{address}");
    let output = run_isolated(Some(&probe), &[program.to_str().unwrap()]);
    // Making a socket is outside the allow-list: the domain is killed before it connects.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("outside its sandbox's policy (SIGSYS)"), "{stderr}");
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept().map(drop).map_err(|error| error.kind());
    assert_eq!(accepted, Err(std::io::ErrorKind::WouldBlock), "nothing connected");
}

#[test]
fn the_sandbox_report_names_every_layer() {
    let output = run_isolated(Some("report"), &[program_file("hello").to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    for layer in ["namespaces:", "rlimits:", "landlock: fully enforced", "seccomp:"] {
        assert!(stderr.contains(layer), "{layer}: {stderr}");
    }
    assert!(text(&output.stdout).contains("hello from nebulet"), "{output:?}");
}

/// Exits with code 7 once the channel it is sent in its bootstrap message closes.
const WAITS_FOR_PEER_CLOSED: &str = r#"(module
    (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
    (import "nebulet" "object_wait_one" (func $wait (param i32 i32 i64 i32) (result i32)))
    (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
    (import "nebulet" "process_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start")
      (drop (call $bootstrap (i32.const 0)))
      (drop (call $wait (i32.load (i32.const 0)) (i32.const 1) (i64.const 0x7fffffffffffffff) (i32.const 4)))
      (if (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 16) (i32.const 1) (i32.const 8) (i32.const 12))
        (then unreachable))
      ;; PEER_CLOSED on the channel it was sent.
      (drop (call $wait (i32.load (i32.const 16)) (i32.const 4) (i64.const 0x7fffffffffffffff) (i32.const 4)))
      (call $exit (i32.const 7))))"#;

/// Echoes every message on its bootstrap channel, handles included, until the peer closes.
const ECHO: &str = include_str!("../../../../apps/tests/echo.wat");

fn options(name: &str) -> DomainOptions {
    DomainOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_nebulet")), name)
}

/// Waits at most [`PATIENCE`] for `future`.
async fn patiently<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.expect("no hang")
}

async fn read(end: &ChannelEnd) -> Option<CrossingMessage> {
    patiently(poll_fn(|context| end.poll_read(context))).await
}

async fn write(end: &ChannelEnd, message: CrossingMessage) {
    let mut pending = Some(message);
    patiently(poll_fn(|context| {
        let message = pending.take().expect("written once");
        match end.poll_write(context, message) {
            Ok(()) => std::task::Poll::Ready(()),
            Err((nebulet_abi::Error::ShouldWait, message)) => {
                pending = Some(message);
                std::task::Poll::Pending
            }
            Err((error, _)) => panic!("write: {error:?}"),
        }
    }))
    .await
}

#[test]
fn a_thousand_messages_carrying_channels_cross_both_ways() {
    const COUNT: u32 = 1000;
    let system = System::new();
    let status = system.emulator.block_on(async {
        let (mine, theirs) = ChannelEnd::crossing_pair();
        let options = DomainOptions { bootstrap: Some(theirs), ..options("echo") };
        let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        let writer = {
            let mine = mine.clone();
            tokio::spawn(async move {
                let mut kept = Vec::new();
                for number in 0..COUNT {
                    // Each carried channel holds a message of its own, which must cross with it.
                    let (near, far) = ChannelEnd::crossing_pair();
                    let tag = CrossingMessage {
                        bytes: format!("tag {number}").into_bytes(),
                        handles: Vec::new(),
                    };
                    write(&near, tag).await;
                    let handles = vec![(Crossed::Channel(far), Rights::CHANNEL_DEFAULT)];
                    write(&mine, CrossingMessage { bytes: number.to_le_bytes().to_vec(), handles })
                        .await;
                    kept.push(near);
                }
                kept
            })
        };
        let mut seen = vec![false; COUNT as usize];
        for _ in 0..COUNT {
            let message = read(&mine).await.expect("an echo");
            let number = u32::from_le_bytes(message.bytes.try_into().unwrap());
            assert!(!std::mem::replace(&mut seen[number as usize], true), "{number} twice");
            let [(Crossed::Channel(carried), rights)] =
                <[_; 1]>::try_from(message.handles).unwrap()
            else {
                panic!("a channel came back")
            };
            assert_eq!(rights, Rights::CHANNEL_DEFAULT);
            let tag = read(&carried).await.expect("the carried channel's message");
            assert_eq!(text(&tag.bytes), format!("tag {number}"));
        }
        assert!(seen.iter().all(|&seen| seen));
        let kept = writer.await.unwrap();
        assert_eq!(kept.len(), COUNT as usize);
        drop(mine);
        patiently(domain.wait()).await
    });
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
}

/// Starts a local process of [`WAITS_FOR_PEER_CLOSED`] given `end`.
fn start_waiter(system: &System, end: ChannelEnd) -> nebulet_hosted::ProcessRef {
    let module = system.module(WAITS_FOR_PEER_CLOSED);
    let options = ProcessOptions { name: "waiter".into(), ..Default::default() };
    system
        .emulator
        .kernel()
        .spawn_with_message(module, options, Vec::new(), vec![Grant::Channel(end)])
        .unwrap()
}

#[test]
fn after_a_domain_is_killed_its_peers_see_peer_closed() {
    let system = System::new();
    let (local, bridged) = ChannelEnd::crossing_pair();
    let waiter = start_waiter(&system, local);
    let (status, waited): (ExitStatus, ExitStatus) = system.emulator.block_on(async {
        let options = DomainOptions { bootstrap: Some(bridged), ..options("echo") };
        let mut domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        domain.kill();
        let status = patiently(domain.wait()).await;
        (status, patiently(waiter.wait()).await)
    });
    assert_eq!(status.reason, ExitReason::DomainFault, "{status:?}");
    assert!(status.message.as_deref().unwrap().contains("killed by signal 9"), "{status:?}");
    assert_eq!((waited.code, waited.reason), (7, ExitReason::Exited), "{waited:?}");
}

#[test]
fn a_forbidden_system_call_kills_only_the_domain() {
    let system = System::new();
    let (local, bridged) = ChannelEnd::crossing_pair();
    let waiter = start_waiter(&system, local);
    let (status, waited) = system.emulator.block_on(async {
        let options = DomainOptions {
            bootstrap: Some(bridged),
            probe: Some("syscall".into()),
            ..options("echo")
        };
        let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        (patiently(domain.wait()).await, patiently(waiter.wait()).await)
    });
    assert_eq!((status.code, status.reason), (-1, ExitReason::DomainFault), "{status:?}");
    assert!(status.message.as_deref().unwrap().contains("(SIGSYS)"), "{status:?}");
    // The kernel and its processes go on: the local peer saw PEER_CLOSED and exited.
    assert_eq!((waited.code, waited.reason), (7, ExitReason::Exited), "{waited:?}");
    let after = system.run(system.module(r#"(module (func (export "_start")))"#), "after", &[]);
    assert_eq!(after.reason, ExitReason::Exited);
}

/// Reads `socket` to the end of its stream.
async fn read_to_end(socket: &SocketEnd) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = vec![0; 65_536];
    loop {
        let count = patiently(poll_fn(|context| socket.poll_read(context, &mut buffer))).await;
        if count == 0 {
            return received;
        }
        received.extend_from_slice(&buffer[..count]);
    }
}

/// Writes all of `bytes` to `socket`.
async fn write_all(socket: &SocketEnd, bytes: &[u8]) {
    let mut written = 0;
    while written < bytes.len() {
        let count = patiently(poll_fn(|context| socket.poll_write(context, &bytes[written..])))
            .await
            .expect("the peer reads");
        written += count;
    }
}

#[test]
fn a_socket_crosses_into_a_domain_and_back_with_its_bytes_end_and_close() {
    let system = System::new();
    system.emulator.block_on(async {
        let (mine, theirs) = ChannelEnd::crossing_pair();
        let options = DomainOptions { bootstrap: Some(theirs), ..options("echo") };
        let domain = Domain::start(ECHO.as_bytes().to_vec(), options).await.unwrap();
        // The far end goes into the domain, whose program sends it back: the bytes cross twice
        // each way, through a socket end the domain's bridge made and one the parent's made.
        let (near, far) = SocketEnd::pair();
        let handles = vec![(Crossed::Socket(far), Rights::SOCKET_DEFAULT)];
        write(&mine, CrossingMessage { bytes: b"socket".to_vec(), handles }).await;
        let message = read(&mine).await.expect("the echo");
        let [(Crossed::Socket(returned), rights)] = <[_; 1]>::try_from(message.handles).unwrap()
        else {
            panic!("a socket came back")
        };
        assert_eq!(rights, Rights::SOCKET_DEFAULT);
        // Four times a socket's buffer each way: the credits must come back for it to pass.
        let bytes: Vec<u8> = (0..1 << 20).map(|index: u32| (index % 251) as u8).collect();
        let expected = bytes.clone();
        let sending = tokio::spawn(async move {
            write_all(&near, &bytes).await;
            near.shutdown_write();
            near
        });
        assert!(read_to_end(&returned).await == expected, "the bytes crossed in order, once");
        let near = sending.await.unwrap();
        // And back, to the end.
        let backwards = tokio::spawn(async move {
            write_all(&returned, b"back").await;
            returned.shutdown_write();
            returned
        });
        assert_eq!(read_to_end(&near).await, b"back");
        let returned = backwards.await.unwrap();
        // Closing one end closes the other across both domains.
        drop(near);
        patiently(poll_fn(|context| returned.poll_peer_closed(context))).await;
        drop(mine);
        let status = patiently(domain.wait()).await;
        assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
    });
}

#[test]
fn only_channels_and_sockets_cross_a_domain_boundary() {
    let system = System::new();
    // A process holding a bridged channel tries to send an event over it.
    let (local, _bridged) = ChannelEnd::crossing_pair();
    let module = system.module(
        r#"(module
        (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
        (import "nebulet" "channel_read" (func $read (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
        (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
        (import "nebulet" "event_create" (func $event (param i32) (result i32)))
        (import "nebulet" "process_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (drop (call $bootstrap (i32.const 0)))
          (drop (call $read (i32.load (i32.const 0)) (i32.const 64) (i32.const 64) (i32.const 16) (i32.const 1) (i32.const 8) (i32.const 12)))
          (drop (call $event (i32.const 20)))
          ;; ERR_NOT_SUPPORTED is -2; the event stays the caller's (a second try fails alike).
          (call $exit (i32.sub (i32.const 0)
            (i32.add (call $write (i32.load (i32.const 16)) (i32.const 64) (i32.const 0) (i32.const 20) (i32.const 1))
                     (call $write (i32.load (i32.const 16)) (i32.const 64) (i32.const 0) (i32.const 20) (i32.const 1)))))))"#,
    );
    let options = ProcessOptions { name: "sender".into(), ..Default::default() };
    let process = system
        .emulator
        .kernel()
        .spawn_with_message(module, options, Vec::new(), vec![Grant::Channel(local)])
        .unwrap();
    let status = system.wait(&process);
    assert_eq!((status.code, status.reason), (4, ExitReason::Exited), "{status:?}");
}

#[test]
fn what_a_domain_wrote_just_before_it_ended_still_crosses() {
    let system = System::new();
    let module = r#"(module
        (import "nebulet" "process_bootstrap" (func $bootstrap (param i32) (result i32)))
        (import "nebulet" "channel_write" (func $write (param i32 i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 64) "last words")
        (func (export "_start")
          (drop (call $bootstrap (i32.const 0)))
          (if (call $write (i32.load (i32.const 0)) (i32.const 64) (i32.const 10) (i32.const 0) (i32.const 0))
            (then unreachable))))"#;
    let (received, after, status) = system.emulator.block_on(async {
        let (mine, theirs) = ChannelEnd::crossing_pair();
        let options = DomainOptions { bootstrap: Some(theirs), ..options("last") };
        let domain = Domain::start(module.as_bytes().to_vec(), options).await.unwrap();
        let received = read(&mine).await.map(|message| text(&message.bytes));
        let after = read(&mine).await.map(|message| text(&message.bytes));
        (received, after, patiently(domain.wait()).await)
    });
    assert_eq!(received.as_deref(), Some("last words"));
    assert_eq!(after, None, "then PEER_CLOSED");
    assert_eq!((status.code, status.reason), (0, ExitReason::Exited), "{status:?}");
}

#[test]
fn a_listening_socket_is_an_isolated_programs_only_network() {
    use std::io::{BufRead, Read, Write};
    let program = program_file("wasi-std");
    let mut command = crate::nebulet_command();
    command.args(["run", "--isolate", "-v", "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    command.args([program.to_str().unwrap(), "tcp", "1"]);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line
        .strip_prefix("nebulet: listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address: {line}"))
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.write_all(b"across the wall").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "ACROSS THE WALL");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{rest}");
    assert!(text(&output.stdout).contains("wasi-std tcp: ok"), "{output:?}");
}
