//! The host's network as capabilities: a listener the host feeds from a TCP port, granted to a
//! native program, whose accepted sockets are bridged to real TCP connections.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use nebulet_abi::ExitReason;
use nebulet_hosted::{Grant, ProcessOptions};

use crate::{PATIENCE, System};

/// Starts `module` as `name ARGS` with `listeners` at its WASI descriptors from 3.
fn start(
    system: &System,
    module: nebulet_hosted::wasmtime::Module,
    name: &str,
    args: &[&str],
    listeners: Vec<std::sync::Arc<nebulet_hosted::Listener>>,
) -> nebulet_hosted::ProcessRef {
    let args = args.iter().map(|arg| arg.to_string()).collect();
    let options = ProcessOptions { name: name.into(), args, listeners, ..Default::default() };
    system.emulator.kernel().spawn(module, options)
}

/// Starts `syscalls CASE` with one host object granted in its bootstrap message, whose bytes
/// name it (`listener`, `connector`).
fn start_granted(
    system: &System,
    case: &str,
    name: &str,
    grant: Grant,
) -> nebulet_hosted::ProcessRef {
    let options =
        ProcessOptions { name: "syscalls".into(), args: vec![case.into()], ..Default::default() };
    let program = system.program("syscalls");
    let message = name.as_bytes().to_vec();
    system.emulator.kernel().spawn_with_message(program, options, message, vec![grant]).unwrap()
}

/// Waits for `process` to exit with `code`, and for its console to hold `line`.
fn assert_exits(system: &System, process: &nebulet_hosted::ProcessRef, code: i32, line: &str) {
    let status = system.wait(process);
    let console = system.console();
    assert_eq!((status.reason, status.code), (ExitReason::Exited, code), "{status:?}\n{console}");
    assert!(console.contains(line), "{console}");
}

#[test]
fn a_granted_listener_accepts_real_tcp_connections_in_both_directions() {
    let system = System::new();
    let (listener, address) = system.emulator.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let process = start_granted(&system, "echo", "listener", Grant::Listener(listener.clone()));
    // Several connections, one after the other, each with more than one socket buffer of
    // bytes each way, so both bridges wait for room.
    for round in 0..3u8 {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let sent: Vec<u8> =
            (0..600_000u32).map(|index| (index as u8).wrapping_add(round)).collect();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            let sent = sent.clone();
            std::thread::spawn(move || {
                stream.write_all(&sent).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).unwrap();
        writer.join().unwrap();
        assert_eq!(echoed.len(), sent.len(), "round {round}: every byte came back");
        assert!(echoed == sent, "round {round}: in order");
    }
    // The host closes the listener: the program sees PEER_CLOSED and ends.
    listener.close();
    drop(listener);
    let status = system.wait(&process);
    assert_eq!(
        (status.reason, status.code),
        (ExitReason::Exited, 0),
        "{status:?}\n{}",
        system.console()
    );
}

#[test]
fn a_listener_nobody_holds_stops_accepting() {
    let system = System::new();
    let (listener, address) = system.emulator.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    drop(listener);
    // The accept loop notices at its next connection and closes the port; that connection is
    // dropped unanswered: the reset may reach any of the calls below (even `setsockopt`, once
    // the socket holds the error), or the port is already closed.
    let answer = TcpStream::connect(address).and_then(|mut first| {
        first.set_read_timeout(Some(PATIENCE))?;
        first.read(&mut [0u8; 1])
    });
    assert!(matches!(answer, Ok(0) | Err(_)), "closed, not answered: {answer:?}");
}

/// Sends `request` on a new connection to `address`, closes its sending side, and returns all
/// the answer.
fn exchange(address: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

#[test]
fn an_unmodified_rust_std_program_accepts_on_preopened_listening_sockets() {
    let system = System::new();
    let local = "127.0.0.1:0".parse().unwrap();
    let (listener, address) = system.emulator.listen(local).unwrap();
    let (idle, _) = system.emulator.listen(local).unwrap();
    let process =
        start(&system, system.program("wasi-std"), "wasi-std", &["tcp", "3"], vec![listener, idle]);
    let large: Vec<u8> = (0..400_000u32).map(|index| b'a' + (index % 26) as u8).collect();
    for request in [b"hello".as_slice(), b"", large.as_slice()] {
        assert_eq!(exchange(address, request), request.to_ascii_uppercase());
    }
    assert_exits(&system, &process, 0, "wasi-std tcp: ok");
}

#[test]
#[cfg_attr(
    nebulet_no_c_program,
    ignore = "the C test program wasi-c was not built: no clang or \
    wasi-libc when the nebulet crate was built (apt-get install clang lld wasi-libc \
    libclang-rt-14-dev-wasm32)"
)]
fn a_c_program_accepts_polls_and_echoes_through_wasi_libc() {
    let bytes =
        nebulet::image::find("wasi-c").expect("build.rs builds wasi-c or marks this ignored");
    let system = System::new();
    let (listener, address) = system.emulator.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let process = start(&system, system.module(bytes), "wasi-c", &["--tcp", "2"], vec![listener]);
    let large: Vec<u8> = (0..300_000u32).map(|index| (index % 251) as u8).collect();
    for request in [b"ping".as_slice(), large.as_slice()] {
        assert!(exchange(address, request) == request, "echoed whole and in order");
    }
    assert_exits(&system, &process, 42, "wasi-c: echoed 2 connections");
}

#[test]
fn wasi_socket_calls_fdstat_nonblocking_and_poll() {
    let system = System::new();
    let local = "127.0.0.1:0".parse().unwrap();
    let (listener, address) = system.emulator.listen(local).unwrap();
    let (idle, _) = system.emulator.listen(local).unwrap();
    let process = start(
        &system,
        system.program("syscalls"),
        "syscalls",
        &["wasi-sockets"],
        vec![listener, idle],
    );
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"abc").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"xyz");
    drop(stream);
    assert_exits(&system, &process, 0, "syscalls wasi-sockets: ok");
}

/// Reads a host end of a socket to the end of its stream.
async fn read_to_end(socket: &nebulet_hosted::SocketEnd) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        let count = std::future::poll_fn(|context| socket.poll_read(context, &mut buffer)).await;
        if count == 0 {
            return all;
        }
        all.extend_from_slice(&buffer[..count]);
    }
}

#[test]
fn standard_streams_can_be_sockets_the_host_holds() {
    use nebulet_hosted::{SocketEnd, Stdio};
    let system = System::new();
    let [(input, host_input), (output, host_output), (error, host_error)] =
        [(); 3].map(|()| SocketEnd::pair());
    let options = ProcessOptions {
        name: "wasi-std".into(),
        args: vec!["stdio".into()],
        stdio: Some(Stdio { input, output, error }),
        ..Default::default()
    };
    let process = system.emulator.kernel().spawn(system.program("wasi-std"), options);
    let request = b"the body of a request\n".repeat(20_000);
    let (stdout, stderr) = system.emulator.block_on(async {
        let mut rest = request.as_slice();
        while !rest.is_empty() {
            let written = std::future::poll_fn(|context| host_input.poll_write(context, rest))
                .await
                .expect("the process reads its stdin");
            rest = &rest[written..];
        }
        host_input.shutdown_write();
        let stdout = read_to_end(&host_output).await;
        (stdout, read_to_end(&host_error).await)
    });
    let status = system.wait(&process);
    assert_eq!((status.reason, status.code), (ExitReason::Exited, 0), "{status:?}");
    assert!(stdout.starts_with(&request.to_ascii_uppercase()), "stdout is the uppercased input");
    assert_eq!(String::from_utf8_lossy(&stdout[request.len()..]), "wasi-std stdio: ok\n");
    assert_eq!(stderr, b"done\n");
    assert_eq!(system.console(), "", "nothing reached the console");
}

#[test]
fn a_granted_connector_reaches_its_one_host_address() {
    use std::net::TcpListener;
    let system = System::new();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = server.local_addr().unwrap();
    let connector = nebulet_hosted::network::connector(system.emulator.runtime(), address);
    let process = start_granted(&system, "connect", "connector", Grant::Connector(connector));
    let (mut stream, _) = server.accept().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = Vec::new();
    stream.read_to_end(&mut request).unwrap();
    assert_eq!(request, b"hello");
    stream.write_all(b"hello to you").unwrap();
    // Nobody listens there any more before the program sees the end of its stream, so its
    // second connection is refused.
    drop(server);
    drop(stream);
    assert_exits(
        &system,
        &process,
        0,
        "answer: hello to you
",
    );
}
