//! The host's network as capabilities: a listener the host feeds from a TCP port, granted to a
//! native program, whose accepted sockets are bridged to real TCP connections.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use nebulet_abi::ExitReason;
use nebulet_hosted::{Grant, ProcessOptions};

use crate::{PATIENCE, System};

#[test]
fn a_granted_listener_accepts_real_tcp_connections_in_both_directions() {
    let system = System::new();
    let (listener, address) = system.emulator.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let options =
        ProcessOptions { name: "echo".into(), args: vec!["echo".into()], ..Default::default() };
    let process = system
        .emulator
        .kernel()
        .spawn_with_message(
            system.program("syscalls"),
            options,
            b"listener".to_vec(),
            vec![Grant::Listener(listener.clone())],
        )
        .unwrap();
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
    // dropped unanswered.
    let mut first = TcpStream::connect(address).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(first.read(&mut byte), Ok(0) | Err(_)), "closed, not answered");
}
