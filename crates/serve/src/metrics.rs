//! Prometheus metrics of a server (`nebulet serve --metrics`): requests by status, their
//! latency, handlers running and queued, live processes and memory, in the text format at
//! `GET /metrics`. The `metrics` crate's handles count; `metrics-exporter-prometheus` renders.
//!
//! Each server has its own recorder (not the process-wide one), so that servers in one process
//! (the tests) keep their figures apart.

use std::time::Duration;

use metrics::{Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram};
use metrics::{gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use nebulet_abi::Limit;
use nebulet_hosted::Kernel;

use crate::Statistics;

const REQUESTS: &str = "nebulet_serve_requests_total";
const LATENCY: &str = "nebulet_serve_request_duration_seconds";
const RUNNING: &str = "nebulet_serve_handlers_running";
const QUEUED: &str = "nebulet_serve_requests_queued";
const CONNECTIONS: &str = "nebulet_serve_connections";
const PROCESSES: &str = "nebulet_live_processes";
const MEMORY: &str = "nebulet_memory_bytes";
const RESIDENT: &str = "process_resident_memory_bytes";

/// The latency histogram's buckets, in seconds: 100 µs to 30 s.
const BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// A server's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let latency = with_local_recorder(&recorder, || {
            describe_counter!(REQUESTS, "HTTP requests answered, by status code");
            describe_histogram!(
                LATENCY,
                Unit::Seconds,
                "From a request's head to its answer's end"
            );
            describe_gauge!(RUNNING, "Handler processes running");
            describe_gauge!(QUEUED, "Requests waiting for a handler");
            describe_gauge!(CONNECTIONS, "Open client connections");
            describe_gauge!(PROCESSES, "Processes of the kernel started and not yet ended");
            describe_gauge!(MEMORY, Unit::Bytes, "Memory all processes use (the root budget)");
            describe_gauge!(RESIDENT, Unit::Bytes, "Resident memory of the nebulet process");
            histogram!(LATENCY)
        });
        Self { recorder, handle, latency }
    }

    /// One request answered (or given up on, 499) with `status` after `elapsed`.
    pub(crate) fn answered(&self, status: u16, elapsed: Duration) {
        with_local_recorder(&self.recorder, || {
            counter!(REQUESTS, "status" => status.to_string()).increment(1);
        });
        self.latency.record(elapsed.as_secs_f64());
    }

    /// The text format, with the gauges read now.
    pub(crate) fn render(&self, kernel: &Kernel, statistics: &Statistics) -> String {
        with_local_recorder(&self.recorder, || {
            gauge!(RUNNING).set(statistics.running as f64);
            gauge!(QUEUED).set(statistics.queued as f64);
            gauge!(CONNECTIONS).set(statistics.connections as f64);
            gauge!(PROCESSES).set(kernel.live_processes() as f64);
            let memory = Limit::ALL.iter().position(|limit| *limit == Limit::MemoryBytes);
            let used = memory.map_or(0, |index| kernel.root_budget().used[index]);
            gauge!(MEMORY).set(used as f64);
            if let Some(resident) = resident_bytes() {
                gauge!(RESIDENT).set(resident as f64);
            }
        });
        self.handle.render()
    }
}

/// This process's resident memory, from `/proc/self/status` (`VmRSS:  N kB`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kibibytes: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kibibytes << 10)
}
