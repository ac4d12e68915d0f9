//! `worker`: one of swarm's workers. Its bootstrap handle is a channel (not the image
//! protocol); each message is `(i, j)` as two little-endian `u32`s and gets the reply
//! `(i, j, j * 2 + 1)`. Exits 0 when the peer closes.

use sip::{DEADLINE_INFINITE, Error, Message};

fn main() {
    let Some(channel) = sip::process::bootstrap_channel() else {
        println!("worker: {}", sip::process::NO_BOOTSTRAP);
        sip::process::exit(1);
    };
    let mut message = Message::new();
    loop {
        match channel.read_blocking_into(&mut message, DEADLINE_INFINITE) {
            Ok(()) => {}
            Err(Error::PeerClosed) => return,
            Err(error) => {
                println!("worker: read failed: {error}");
                sip::process::exit(1);
            }
        }
        let Some((i, j)) = decode(&message.bytes) else {
            println!("worker: expected 8 bytes, got {}", message.bytes.len());
            sip::process::exit(2);
        };
        let mut reply = [0u8; 12];
        reply[0..4].copy_from_slice(&i.to_le_bytes());
        reply[4..8].copy_from_slice(&j.to_le_bytes());
        reply[8..12].copy_from_slice(&j.wrapping_mul(2).wrapping_add(1).to_le_bytes());
        match channel.write_blocking(&reply, Vec::new(), DEADLINE_INFINITE) {
            Ok(()) => {}
            Err(failed) if failed.error == Error::PeerClosed => return,
            Err(failed) => {
                println!("worker {i}: write failed: {}", failed.error);
                sip::process::exit(1);
            }
        }
    }
}

/// `(i, j)` from 8 little-endian bytes.
fn decode(bytes: &[u8]) -> Option<(u32, u32)> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    let (i, j) = bytes.split_at(4);
    Some((u32::from_le_bytes(i.try_into().ok()?), u32::from_le_bytes(j.try_into().ok()?)))
}
