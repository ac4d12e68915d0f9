//! Handlers that misbehave cost one answer, never the server: traps and bad output are 500,
//! CPU time and wall time 504, memory 500; the server answers the next request as before.

use std::time::Duration;

use super::{Serving, limits};

#[test]
fn failing_handlers_get_500_and_the_server_keeps_serving() {
    // Pooled, as `nebulet serve` runs: a memory slot is as large as the memory limit.
    let serving = Serving::start_pooled("wagi", limits(|limits| limits.memory_bytes = 16 << 20));
    let mut client = serving.client();
    for target in ["/trap", "/garbage", "/nothing", "/grow"] {
        let reply = serving.block_on(client.send("GET", target, &[], b""));
        assert_eq!(reply.status, 500, "{target}: {reply:?}");
        // The same connection still serves.
        let reply = serving.block_on(client.send("GET", "/hello", &[], b""));
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "Hello, world!\n"),
            "after {target}"
        );
    }
    serving.wait_for(|statistics| statistics.running == 0);
    let log = serving.log();
    assert!(log.iter().any(|line| line.contains("the handler trapped on purpose")), "{log:#?}");
    assert!(log.iter().any(|line| line.contains("answered 500 (not a CGI response")), "{log:#?}");
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
}

#[test]
fn a_handler_past_its_cpu_time_gets_504() {
    let serving = Serving::start(
        "wagi",
        limits(|limits| {
            limits.cpu_time = Duration::from_millis(50);
            limits.wall_time = crate::PATIENCE * 2;
        }),
    );
    let reply = serving.request("GET", "/spin", b"");
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(serving.request("GET", "/hello", b"").status, 200);
    serving.wait_for(|statistics| statistics.running == 0);
    assert!(serving.log().iter().any(|line| line.contains("answered 504 (CPU time passed)")));
}

#[test]
fn a_handler_past_its_wall_time_is_killed_with_504() {
    let serving = Serving::start(
        "wagi",
        limits(|limits| {
            limits.wall_time = Duration::from_millis(200);
            limits.cpu_time = crate::PATIENCE;
        }),
    );
    let reply = serving.request("GET", "/sleep", b"");
    assert_eq!(reply.status, 504, "{reply:?}");
    serving.wait_for(|statistics| statistics.running == 0);
    assert!(serving.log().iter().any(|line| line.contains("answered 504 (wall time passed)")));
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
}

#[test]
fn a_handler_that_fails_after_its_response_started_cuts_the_body_off() {
    let serving = Serving::start("wagi", Default::default());
    let reply = serving.request("GET", "/big-then-trap", b"");
    // The head went out with the first 64 KiB; the client sees an incomplete message.
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_err(), "cut off, not complete: {:?}", reply.body.map(|body| body.len()));
    assert_eq!(serving.request("GET", "/hello", b"").status, 200);
}

#[test]
fn a_handler_whose_memory_does_not_fit_its_limit_gets_500() {
    // Less than the program's initial memory: it ends "out of resources" before it runs.
    let serving = Serving::start("wagi", limits(|limits| limits.memory_bytes = 64 << 10));
    let reply = serving.request("GET", "/hello", b"");
    assert_eq!(reply.status, 500, "{reply:?}");
    serving.wait_for(|statistics| statistics.running == 0);
    assert_eq!(serving.system.emulator.kernel().live_processes(), 0);
}
