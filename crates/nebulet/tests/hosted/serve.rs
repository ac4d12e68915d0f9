//! `nebulet serve` over real TCP on 127.0.0.1: both handler conventions, every failure answer,
//! the connection and admission limits, a load of 10,000 requests, and the shutdown.
//!
//! Outcomes never depend on timing: a handler that must still be running is one that waits for
//! the rest of its request body, which the test sends only after it has seen (through the
//! server's statistics) what it waits for; limits are chosen so that only one outcome is
//! possible.

mod answers;
mod connections;
mod failures;
mod load;
mod stopping;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nebulet_serve::{App, Limits, Log, Server, Statistics};
use tokio::sync::{oneshot, watch};

use crate::{PATIENCE, System};

/// A server of one test program on a kernel of its own.
pub struct Serving {
    pub system: System,
    pub address: SocketAddr,
    statistics: watch::Receiver<Statistics>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Serving {
    /// Serves the app or test program `program` with `limits`.
    pub fn start(program: &str, limits: Limits) -> Serving {
        Serving::start_on(System::new(), program, limits)
    }

    /// [`Serving::start`] on a kernel with the pooling allocator, as `nebulet serve` runs.
    pub fn start_pooled(program: &str, limits: Limits) -> Serving {
        Serving::start_on(System::pooled(nebulet_serve::pooling(&limits)), program, limits)
    }

    fn start_on(system: System, program: &str, limits: Limits) -> Serving {
        let app = App::new(system.program(program), program, None);
        let log = Arc::new(Mutex::new(Vec::new()));
        let address = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(
            system.emulator.kernel().clone(),
            app,
            limits,
            Log::Memory(log.clone()),
            address,
        )
        .unwrap();
        let (address, statistics) = (server.local_addr(), server.statistics());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = system.emulator.runtime().spawn(server.run(async {
            let _ = stopped.await;
        }));
        Serving { system, address, statistics, log, stop: Some(stop), server: Some(server) }
    }

    /// Runs `future` on the kernel's runtime, failing the test past [`PATIENCE`].
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.system
            .emulator
            .block_on(async { tokio::time::timeout(PATIENCE, future).await })
            .expect("the server answers within PATIENCE")
    }

    /// Waits until the server's statistics satisfy `condition`.
    pub fn wait_for(&self, condition: impl Fn(&Statistics) -> bool) {
        let mut statistics = self.statistics.clone();
        self.block_on(async move {
            statistics.wait_for(|statistics| condition(statistics)).await.map(|_| ()).unwrap();
        });
    }

    /// Signals the shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals the shutdown and waits until the server has ended.
    pub fn stop(&mut self) {
        self.signal_stop();
        if let Some(server) = self.server.take() {
            self.block_on(server).unwrap().unwrap();
        }
    }

    /// The server's log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A keep-alive client connection.
    pub fn client(&self) -> Client {
        let address = self.address;
        self.block_on(async move { Client::connect(address).await })
    }

    /// One request on a connection of its own.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Reply {
        let mut client = self.client();
        self.block_on(client.send(method, target, &[], body))
    }

    /// Writes `bytes` on a new connection and reads the answer until the server closes it.
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        read_to_close(&mut stream)
    }

    /// A raw connection.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Reads until the peer closes (or resets) the connection.
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => answer.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no close within PATIENCE; so far: {}", String::from_utf8_lossy(&answer))
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// What a request got.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    /// The body, or the error that cut it off.
    pub body: Result<Vec<u8>, String>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("a whole body")).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// An HTTP/1.1 client connection (hyper's client), kept alive between requests.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Client { sender }
    }

    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request =
            hyper::Request::builder().method(method).uri(target).header("host", "test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        self.sender.ready().await.expect("the connection is open");
        let response = self.sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes().to_vec())
            .map_err(|error| error.to_string());
        Reply { status: parts.status.as_u16(), headers: parts.headers, body }
    }
}

/// Test limits: the defaults, with `change` applied.
pub fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}
