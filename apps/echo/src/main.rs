//! `echo`: a service. Registers the name `echo`, writes READY to its bootstrap channel, then
//! sends every message a client writes back to that client (bytes and handles).
//!
//! Connections arrive on the registered channel's peer as messages with no bytes and one
//! handle: the client's channel. It serves up to 63 clients at once (one `wait_many` call
//! covers the service channel and every client).

use std::time::Duration;

use sip::abi::WAIT_MANY_MAX_ITEMS;
use sip::abi::bootstrap::READY;
use sip::{Channel, DEADLINE_INFINITE, Error, Message, Signals, WaitItem, clock, service};

/// The most clients served at once.
const MAX_CLIENTS: usize = WAIT_MANY_MAX_ITEMS as usize - 1;

/// How long a reply may wait for room in a client's queue before the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The most messages of one client handled per wake-up, so one client cannot starve others.
const BURST: usize = 16;

/// A connected client.
struct Client {
    id: u64,
    channel: Channel,
}

fn main() {
    let Some(bootstrap) = sip::process::bootstrap_channel() else {
        fail(sip::process::NO_BOOTSTRAP);
    };
    let (connections, registered) =
        Channel::create().unwrap_or_else(|error| fail(&format!("channel_create: {error}")));
    if let Err(failed) = service::register("echo", registered) {
        fail(&format!("cannot register the name echo: {}", failed.error));
    }
    if let Err(error) = bootstrap.write_bytes(READY) {
        fail(&format!("cannot report ready: {error}"));
    }
    println!("echo: serving");

    let mut clients: Vec<Client> = Vec::new();
    let mut next_id = 1u64;
    let mut message = Message::new();
    let watch = Signals::READABLE | Signals::PEER_CLOSED;
    loop {
        let mut items = Vec::with_capacity(1 + clients.len());
        items.push(WaitItem::new(&connections, watch));
        items.extend(clients.iter().map(|client| WaitItem::new(&client.channel, watch)));
        if let Err(error) = sip::wait_many(&mut items, DEADLINE_INFINITE) {
            fail(&format!("wait_many: {error}"));
        }

        // Clients first: `items[1..]` matches `clients` until the first removal.
        let mut gone = Vec::new();
        for (index, item) in items[1..].iter().enumerate() {
            if item.is_pending(watch) && !serve(&clients[index], &mut message) {
                gone.push(index);
            }
        }
        for index in gone.into_iter().rev() {
            let client = clients.remove(index);
            println!("echo: client {} disconnected", client.id);
        }

        if items[0].is_pending(watch) {
            accept(&connections, &mut clients, &mut next_id, &mut message);
        }
    }
}

/// Takes the new connections queued on the service channel.
fn accept(
    connections: &Channel,
    clients: &mut Vec<Client>,
    next_id: &mut u64,
    message: &mut Message,
) {
    loop {
        match connections.read_into(message) {
            Ok(()) => {}
            Err(Error::ShouldWait) => return,
            Err(Error::PeerClosed) => {
                println!("echo: the service name was released; stopping");
                sip::process::exit(0);
            }
            Err(error) => fail(&format!("reading connections: {error}")),
        }
        if !message.bytes.is_empty() || message.handles.len() != 1 {
            println!(
                "echo: ignoring a message of {} bytes and {} handles on the service channel",
                message.bytes.len(),
                message.handles.len()
            );
            continue;
        }
        let Some(handle) = message.handles.pop() else {
            continue;
        };
        let id = *next_id;
        *next_id += 1;
        if clients.len() >= MAX_CLIENTS {
            println!("echo: refusing client {id}: {MAX_CLIENTS} clients already");
            continue;
        }
        println!("echo: client {id} connected");
        clients.push(Client { id, channel: Channel::from_handle(handle) });
    }
}

/// Echoes the queued messages of one client; `false` once the client is gone.
fn serve(client: &Client, message: &mut Message) -> bool {
    for _ in 0..BURST {
        match client.channel.read_into(message) {
            Ok(()) => {}
            Err(Error::ShouldWait) => return true,
            Err(Error::PeerClosed) => return false,
            Err(error) => {
                println!("echo: client {}: read failed: {error}", client.id);
                return false;
            }
        }
        let handles = std::mem::take(&mut message.handles);
        let deadline = clock::deadline_after(WRITE_TIMEOUT);
        if let Err(failed) = client.channel.write_blocking(&message.bytes, handles, deadline) {
            if failed.error != Error::PeerClosed {
                println!("echo: client {}: cannot answer: {}", client.id, failed.error);
            }
            return false;
        }
    }
    true
}

fn fail(message: &str) -> ! {
    println!("echo: {message}");
    sip::process::exit(1)
}
