//! Many requests at once: every answer right, none lost, nothing left behind.

use nebulet_serve::Limits;

use super::{Client, Serving};

const REQUESTS: usize = 10_000;
const CLIENTS: usize = 64;

#[test]
fn ten_thousand_requests_from_64_clients_are_all_answered_and_leave_nothing_behind() {
    // As `nebulet serve` runs: instances from the pooling allocator, reset between requests.
    let mut serving = Serving::start_pooled("wagi", Limits::default());
    let address = serving.address;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            serving.system.emulator.runtime().spawn(async move {
                let mut connection = Client::connect(address).await;
                let mut answered = 0;
                // Client `client` sends requests client, client + 64, ... of the 10,000.
                for request in (client..REQUESTS).step_by(CLIENTS) {
                    let target = if request % 2 == 0 { "/hello" } else { "/status?code=404" };
                    let reply = connection.send("GET", target, &[], b"").await;
                    let expected = if request % 2 == 0 {
                        (200, "Hello, world!\n")
                    } else {
                        (404, "status 404\n")
                    };
                    assert_eq!(
                        (reply.status, reply.text().as_str()),
                        expected,
                        "request {request}"
                    );
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|client| serving.block_on(client).unwrap()).sum();
    assert_eq!(answered, REQUESTS);
    serving.stop();
    serving.wait_for(|statistics| statistics.connections == 0 && statistics.running == 0);
    let log = serving.log();
    let access = log.iter().filter(|line| line.starts_with("127.0.0.1 \"GET ")).count();
    assert_eq!(access, REQUESTS, "one access line per request");
    let kernel = serving.system.emulator.kernel();
    assert_eq!((kernel.live_processes(), kernel.live_threads()), (0, 0));
    let used = kernel.root_budget().used;
    for (limit, used) in nebulet_abi::Limit::ALL.into_iter().zip(used) {
        if limit != nebulet_abi::Limit::CpuNanoseconds {
            assert_eq!(used, 0, "{limit:?} still used after every process ended");
        }
    }
}
