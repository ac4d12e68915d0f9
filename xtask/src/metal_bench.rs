//! `cargo xtask bench --metal`: the bare-metal kernel's figures under QEMU's TCG (emulated, so
//! slower than the same code on hardware): boot to init's first line, a message round trip,
//! spawn, the lateness of 1 ms sleeps beside a spinner per core, HTTP requests per second
//! through the forwarded port (`--serve`), and the RAM floor. Each boot is
//! this xtask's own `qemu` task, its serial output read back; the figures come from lines the
//! kernel and the apps print. A full run rewrites its section of `docs/metal.md`.

use std::process::Command;
use std::time::Instant;

const SECTION_START: &str = "<!-- metal bench: start -->";
const SECTION_END: &str = "<!-- metal bench: end -->";
/// The RAM sizes the floor is searched between, in MiB.
const FLOOR_RANGE: (u32, u32) = (4, 64);

/// One boot: whether the kernel exited with success, and what it printed.
fn boot(arguments: &[&str]) -> Result<(bool, String), String> {
    let executable = std::env::current_exe().map_err(|error| format!("no xtask path: {error}"))?;
    let output = Command::new(executable)
        .arg("qemu")
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run xtask qemu: {error}"))?;
    let console = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok((output.status.success(), console))
}

/// The serial output of a boot that must pass.
fn passing(arguments: &[&str]) -> Result<String, String> {
    match boot(arguments)? {
        (true, console) => Ok(console),
        (false, console) => Err(format!("xtask qemu {} failed:\n{console}", arguments.join(" "))),
    }
}

/// The number in `console` between `before` and `after` on the first line that has `before`.
fn number(console: &str, before: &str, after: &str) -> Option<f64> {
    let line = console.lines().find(|line| line.contains(before))?;
    let rest = &line[line.find(before)? + before.len()..];
    rest[..rest.find(after)?].trim().parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The figures of one run.
#[derive(Debug, Default)]
struct Figures {
    first_line_ms: Vec<f64>,
    round_trip_us: Vec<f64>,
    spawn_us: Vec<f64>,
    late_p50_us: Vec<f64>,
    late_p99_us: Vec<f64>,
    requests_per_second: Vec<f64>,
    requests_per_second_concurrent: Vec<f64>,
    floor_mib: Option<u32>,
    floor_cores_mib: Option<u32>,
}

pub(crate) fn bench(quick: bool) -> Result<(), String> {
    let started = Instant::now();
    let (built, console) = boot(&["--build-only"])?;
    if !built {
        return Err(format!("cargo xtask qemu --build-only failed:\n{console}"));
    }
    let scratch = crate::root().join("target/metal");
    let manifest = |name: &str, text: &str| -> Result<String, String> {
        let path = scratch.join(format!("bench-{name}.manifest"));
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(path.to_str().ok_or("a UTF-8 path")?.to_string())
    };
    let swarm = manifest("swarm", "start swarm\n")?;
    let spinners = manifest("spinners", "start spinners\n")?;
    let runs = if quick { 1 } else { 3 };
    let mut figures = Figures::default();
    for run in 1..=runs {
        eprintln!("xtask: bench --metal: run {run} of {runs}: the demo on one core");
        let console = passing(&["--memory", "256M"])?;
        figures.first_line_ms.extend(number(&console, "init's first line", "ms after"));
        figures
            .round_trip_us
            .extend(number(&console, "ping: 1000 round trips, mean", "ns").map(|ns| ns / 1000.0));
        eprintln!("xtask: bench --metal: run {run} of {runs}: the swarm on one core");
        let console = passing(&["--memory", "1G", "--manifest", &swarm, "--timeout", "300"])?;
        figures
            .spawn_us
            .extend(number(&console, "swarm: started 1000 workers in", "us").map(|us| us / 1000.0));
        eprintln!("xtask: bench --metal: run {run} of {runs}: four spinners on four cores");
        let console = passing(&["--cpus", "4", "--memory", "64M", "--manifest", &spinners])?;
        figures.late_p50_us.extend(number(&console, "late p50", "us"));
        figures.late_p99_us.extend(number(&console, "p99", "us"));
    }
    eprintln!("xtask: bench --metal: the hello handler through the forwarded port");
    let (alone, concurrent) = serve_rates(if quick { 50 } else { 500 })?;
    figures.requests_per_second.push(alone);
    figures.requests_per_second_concurrent.push(concurrent);
    if !quick {
        figures.floor_mib = floor(&["--cpus", "1"])?;
        figures.floor_cores_mib = floor(&["--cpus", "4"])?;
    }
    let section = section(&figures, started.elapsed().as_secs(), quick);
    println!("{section}");
    if !quick {
        let page_path = crate::root().join("docs/metal.md");
        let page = std::fs::read_to_string(&page_path)
            .map_err(|error| format!("cannot read {}: {error}", page_path.display()))?;
        let (Some(start), Some(end)) = (page.find(SECTION_START), page.find(SECTION_END)) else {
            return Err(format!("{} has no {SECTION_START} … {SECTION_END}", page_path.display()));
        };
        let page = format!("{}{section}{}", &page[..start], &page[end + SECTION_END.len()..]);
        std::fs::write(&page_path, page)
            .map_err(|error| format!("cannot write {}: {error}", page_path.display()))?;
        eprintln!("xtask: bench --metal: wrote {}", page_path.display());
    }
    Ok(())
}

/// The smallest RAM, in whole MiB within `FLOOR_RANGE`, on which the demo passes (a binary
/// search: passing is taken to be monotonic in the RAM size); `None` if it fails at the top.
fn floor(machine: &[&str]) -> Result<Option<u32>, String> {
    let passes = |mib: u32| -> Result<bool, String> {
        eprintln!("xtask: bench --metal: the demo on {mib} MiB ({})", machine.join(" "));
        let memory = format!("{mib}M");
        Ok(boot(&[machine, &["--memory", &memory]].concat())?.0)
    };
    let (mut low, mut high) = FLOOR_RANGE;
    if !passes(high)? {
        return Ok(None);
    }
    // Invariant: the demo passes on `high` MiB and, unless `low` is the bottom, fails on `low`.
    while high - low > 1 {
        let middle = (low + high) / 2;
        if passes(middle)? {
            high = middle;
        } else {
            low = middle;
        }
    }
    Ok(Some(high))
}

fn section(figures: &Figures, seconds: u64, quick: bool) -> String {
    let row = |name: &str, values: &[f64], unit: &str| {
        let runs = values.len();
        format!("| {name} | {:.1} {unit} | {runs} |\n", median(values.to_vec()))
    };
    let floor = |mib: Option<u32>| match (mib, quick) {
        (_, true) => "not measured (--quick)".to_string(),
        (Some(mib), false) => format!("{mib} MiB"),
        (None, false) => format!("above {} MiB", FLOOR_RANGE.1),
    };
    let machine = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{SECTION_START}\n\
         | figure (QEMU TCG: emulated) | median | runs |\n|---|---:|---:|\n\
         {}{}{}{}{}{}{}\
         | RAM floor: the demo, 1 core | {} | |\n\
         | RAM floor: the demo, 4 cores | {} | |\n\n\
         `cargo xtask bench --metal`, {seconds} s on this machine (load average at the end: \
         {}). Boot to init's first line and the round trip (ping's mean over 1,000) on one core \
         with 256 MiB; spawn (swarm's create and start of 1,000 workers, per worker) on one core \
         with 1 GiB; the lateness of 200 sleeps of 1 ms beside four spinners on four cores \
         (multi-threaded TCG: four host threads, on however many host cores); requests per \
         second of `GET /hello` to the WAGI test handler (`apps/tests/wagi`) served by \
         `cargo xtask qemu --serve` on one core, each a fresh process, from one client and from \
         eight at once, each request on a new connection. The RAM floor \
         is the smallest `--memory` in whole MiB on which the demo (`apps/image.manifest`, the \
         full image) passes.\n\
         {SECTION_END}",
        row("boot to init's first line", &figures.first_line_ms, "ms"),
        row("message round trip", &figures.round_trip_us, "µs"),
        row("spawn (create + start)", &figures.spawn_us, "µs"),
        row("1 ms sleep lateness p50, 4 spinners on 4 cores", &figures.late_p50_us, "µs"),
        row("1 ms sleep lateness p99, 4 spinners on 4 cores", &figures.late_p99_us, "µs"),
        row(
            "HTTP hello through the forwarded port, 1 client",
            &figures.requests_per_second,
            "requests/s"
        ),
        row(
            "HTTP hello through the forwarded port, 8 clients",
            &figures.requests_per_second_concurrent,
            "requests/s",
        ),
        floor(figures.floor_mib),
        floor(figures.floor_cores_mib),
        machine.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// `cargo xtask qemu --serve`, stopped (its whole process group) when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// One `GET target` on a new connection; whether it was answered 200.
fn get(port: u16, target: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// Requests per second of `GET /hello` to the WAGI test handler under `--serve`: `count` from
/// one client, then `count` from eight at once.
fn serve_rates(count: usize) -> Result<(f64, f64), String> {
    let root = crate::root();
    let mut build = crate::cargo();
    build
        .args(["build", "--release", "--target", "wasm32-wasip1", "--package", "wagi"])
        .arg("--manifest-path")
        .arg(root.join("apps/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target/wasm-apps"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    crate::run(build)?;
    let wasm = root.join("target/wasm-apps/wasm32-wasip1/release/wagi.wasm");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("no free port: {error}"))?
        .port();
    let executable = std::env::current_exe().map_err(|error| format!("no xtask path: {error}"))?;
    let mut command = Command::new(executable);
    command
        .args(["qemu", "--memory", "256M", "--timeout", "600", "--port", &port.to_string()])
        .arg("--serve")
        .arg(&wasm)
        .stdout(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let _server = Server(command.spawn().map_err(|error| format!("cannot serve: {error}"))?);
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while !get(port, "/hello") {
        if Instant::now() > deadline {
            return Err("the server did not answer within 120 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let started = Instant::now();
    let answered = (0..count).filter(|_| get(port, "/hello")).count();
    let alone = answered as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let answered: usize = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..count / 8).filter(|_| get(port, "/hello")).count()))
            .collect();
        clients.into_iter().map(|client| client.join().unwrap_or(0)).sum()
    });
    let concurrent = answered as f64 / started.elapsed().as_secs_f64();
    if answered < count / 8 * 8 {
        return Err(format!("{} of {} requests failed", count / 8 * 8 - answered, count / 8 * 8));
    }
    Ok((alone, concurrent))
}
