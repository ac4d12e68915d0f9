//! The network: a virtio-net device under smoltcp, on QEMU's user network (address
//! 10.0.2.15/24, gateway 10.0.2.2). One lock holds the device, the interface and the sockets;
//! a poller task runs the interface every millisecond (the device's interrupt is not used), and
//! smoltcp wakes the tasks whose sockets can move bytes. A listener keeps `BACKLOG` sockets
//! listening on a port and hands each established connection to a task.

mod bridge;
mod device;

pub use bridge::listener;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::future::{Future, poll_fn};
use core::task::{Context, Poll};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use spin::Mutex;

use crate::clock::now_ns;
use crate::executor;

/// Connections accepted at once on a port (sockets listening for the next ones).
const BACKLOG: usize = 16;
/// Each connection's receive and send buffers.
const BUFFER_BYTES: usize = 8 << 10;
/// How often the interface runs.
const POLL_NS: u64 = 1_000_000;
/// QEMU's user network, as its DHCP server would configure it.
const ADDRESS: [u8; 4] = [10, 0, 2, 15];
const GATEWAY: [u8; 4] = [10, 0, 2, 2];

struct Stack {
    device: device::NetDevice,
    interface: Interface,
    sockets: SocketSet<'static>,
}

/// The machine's network stack.
pub struct Network {
    stack: Mutex<Stack>,
}

impl core::fmt::Debug for Network {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("Network")
    }
}

fn now() -> Instant {
    Instant::from_micros(i64::try_from(now_ns() / 1000).unwrap_or(i64::MAX))
}

impl Network {
    /// Finds the virtio-net device and sets up the interface; starts the poller task.
    pub fn start() -> Result<Arc<Network>, &'static str> {
        let (mut device, mac, function) = device::find()?;
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = now_ns() ^ crate::clock::rdtsc();
        let mut interface = Interface::new(config, &mut device, now());
        let [a, b, c, d] = ADDRESS;
        interface.update_ip_addrs(|addresses| {
            let _ = addresses.push(IpCidr::new(IpAddress::v4(a, b, c, d), 24));
        });
        let [a, b, c, d] = GATEWAY;
        interface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(a, b, c, d))
            .map_err(|_| "no room for the default route")?;
        crate::println!(
            "network: virtio-net at {function}, MAC {}, address {}",
            mac.iter().map(|byte| alloc::format!("{byte:02x}")).collect::<Vec<_>>().join(":"),
            Ipv4Address::from(ADDRESS)
        );
        let network = Arc::new(Network {
            stack: Mutex::new(Stack { device, interface, sockets: SocketSet::new(Vec::new()) }),
        });
        let poller = network.clone();
        executor::spawn(async move {
            loop {
                poller.poll();
                executor::sleep_until(now_ns() + POLL_NS).await;
            }
        })
        .detach();
        Ok(network)
    }

    /// Runs the interface: frames in and out, timers; wakes the sockets' tasks.
    fn poll(&self) {
        let mut stack = self.stack.lock();
        let Stack { device, interface, sockets } = &mut *stack;
        interface.poll(now(), device, sockets);
    }

    fn listening_socket(&self, port: u16) -> Result<SocketHandle, &'static str> {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER_BYTES]),
            tcp::SocketBuffer::new(vec![0; BUFFER_BYTES]),
        );
        socket.listen(port).map_err(|_| "cannot listen")?;
        Ok(self.stack.lock().sockets.add(socket))
    }

    /// Calls `handle` with each connection made to `port`, in a task of its own, forever.
    pub async fn listen<F, Fut>(self: Arc<Self>, port: u16, handle: F)
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut listening = Vec::with_capacity(BACKLOG);
        for _ in 0..BACKLOG {
            match self.listening_socket(port) {
                Ok(socket) => listening.push(socket),
                Err(error) => crate::println!("network: port {port}: {error}"),
            }
        }
        loop {
            let established = poll_fn(|context| {
                let mut stack = self.stack.lock();
                for (index, &socket) in listening.iter().enumerate() {
                    let socket_ref = stack.sockets.get_mut::<tcp::Socket>(socket);
                    match socket_ref.state() {
                        tcp::State::Listen | tcp::State::SynReceived => {
                            socket_ref.register_recv_waker(context.waker());
                        }
                        _ => return Poll::Ready(index),
                    }
                }
                Poll::Pending
            })
            .await;
            let socket = listening[established];
            match self.listening_socket(port) {
                Ok(fresh) => listening[established] = fresh,
                Err(_) => {
                    listening.remove(established);
                }
            }
            let connection = Connection { network: self.clone(), socket };
            executor::spawn(handle(connection)).detach();
        }
    }
}

/// One TCP connection, closed and forgotten when dropped.
pub struct Connection {
    network: Arc<Network>,
    socket: SocketHandle,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "Connection({})", self.socket)
    }
}

impl Connection {
    fn with<T>(&self, action: impl FnOnce(&mut tcp::Socket<'static>) -> T) -> T {
        let mut stack = self.network.stack.lock();
        action(stack.sockets.get_mut::<tcp::Socket>(self.socket))
    }

    /// The client's address and port, and the local ones.
    pub fn endpoints(&self) -> (Option<IpEndpoint>, Option<IpEndpoint>) {
        self.with(|socket| (socket.remote_endpoint(), socket.local_endpoint()))
    }

    /// Reads what has arrived into `buffer`: `Ready(0)` at the end of the stream.
    pub fn poll_read(&self, context: &mut Context<'_>, buffer: &mut [u8]) -> Poll<usize> {
        self.with(|socket| {
            if socket.can_recv() {
                return Poll::Ready(socket.recv_slice(buffer).unwrap_or(0));
            }
            if !socket.may_recv() {
                return Poll::Ready(0);
            }
            socket.register_recv_waker(context.waker());
            Poll::Pending
        })
    }

    /// Writes all of `bytes`; `false` if the connection went away first.
    pub async fn write_all(&self, bytes: &[u8]) -> bool {
        let mut written = 0;
        while written < bytes.len() {
            let sent = poll_fn(|context| self.poll_write(context, &bytes[written..])).await;
            match sent {
                Some(count) => written += count,
                None => return false,
            }
        }
        true
    }

    /// Writes what fits of `bytes`: `Ready(None)` if the connection can send no more.
    pub fn poll_write(&self, context: &mut Context<'_>, bytes: &[u8]) -> Poll<Option<usize>> {
        self.with(|socket| {
            if !socket.may_send() {
                return Poll::Ready(None);
            }
            if socket.can_send() {
                return Poll::Ready(socket.send_slice(bytes).ok());
            }
            socket.register_send_waker(context.waker());
            Poll::Pending
        })
    }

    /// Sends what is queued, then closes; waits (at most `patience_ns`) until the peer has
    /// everything.
    pub async fn close(self, patience_ns: u64) {
        self.with(tcp::Socket::close);
        let deadline = now_ns() + patience_ns;
        while now_ns() < deadline {
            let done = self
                .with(|socket| matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait));
            if done {
                break;
            }
            executor::sleep_until(now_ns() + POLL_NS).await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Closed or not, it goes: a peer that sends more gets a reset from the stack.
        self.network.stack.lock().sockets.remove(self.socket);
    }
}
