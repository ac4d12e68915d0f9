//! `pong`: its bootstrap handle is a channel (not the image protocol); answers each 8-byte
//! little-endian number read from it with the number + 1, until the peer closes. Exits 0.

use sip::{DEADLINE_INFINITE, Error, Message};

fn main() {
    let Some(channel) = sip::process::bootstrap_channel() else {
        println!("pong: {}", sip::process::NO_BOOTSTRAP);
        sip::process::exit(1);
    };
    let mut message = Message::new();
    let mut answered = 0u64;
    loop {
        match channel.read_blocking_into(&mut message, DEADLINE_INFINITE) {
            Ok(()) => {}
            Err(Error::PeerClosed) => break,
            Err(error) => {
                println!("pong: read failed: {error}");
                sip::process::exit(1);
            }
        }
        let Ok(number) = <[u8; 8]>::try_from(message.bytes.as_slice()) else {
            println!("pong: expected 8 bytes, got {}", message.bytes.len());
            sip::process::exit(1);
        };
        let reply = u64::from_le_bytes(number).wrapping_add(1);
        match channel.write_blocking(&reply.to_le_bytes(), Vec::new(), DEADLINE_INFINITE) {
            Ok(()) => answered += 1,
            Err(failed) if failed.error == Error::PeerClosed => break,
            Err(failed) => {
                println!("pong: write failed: {}", failed.error);
                sip::process::exit(1);
            }
        }
    }
    println!("pong: answered {answered} messages");
}
