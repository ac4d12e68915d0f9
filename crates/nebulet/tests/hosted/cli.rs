//! The `nebulet` command as a user runs it.

use std::process::Command;

fn nebulet() -> Command {
    super::nebulet_command()
}

pub(super) fn write_temporary(name: &str, text: &str) -> std::path::PathBuf {
    let directory = std::env::temp_dir().join(format!("nebulet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A program that exits with its number of arguments (its name included).
pub const ARGUMENT_COUNTER: &str = r#"(module
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start")
      (drop (call $sizes (i32.const 0) (i32.const 4)))
      (call $exit (i32.load (i32.const 0)))))"#;

#[test]
fn run_exits_with_the_program_exit_code_and_passes_arguments() {
    let path = write_temporary("args.wat", ARGUMENT_COUNTER);
    let output = nebulet().arg("run").arg(&path).args(["--", "one", "two"]).output().unwrap();
    // args are the program name and the two arguments.
    assert_eq!(output.status.code(), Some(3), "{output:?}");
}

/// `nebulet run` with `arguments`, then the `wasi-std` program's `env` case with `after`:
/// the program's output, and its exit code (its number of arguments).
fn run_wasi_env(arguments: &[&str], after: &[&str], host: Option<&str>) -> (String, Option<i32>) {
    // A file per call: tests run at once, and one must not rewrite the file another reads.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let directory = write_temporary("placeholder", "").with_file_name(format!("call-{call}"));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("wasi-std.wasm");
    std::fs::write(&path, nebulet::image::find("wasi-std").unwrap()).unwrap();
    let mut command = nebulet();
    match host {
        Some(value) => command.env("NEBULET_TEST", value),
        None => command.env_remove("NEBULET_TEST"),
    };
    let output = command.arg("run").args(arguments).arg(&path).arg("env").args(after).output();
    let output = output.unwrap();
    assert!(output.stderr.is_empty(), "{output:?}");
    (String::from_utf8(output.stdout).unwrap(), output.status.code())
}

#[test]
fn everything_after_the_module_goes_to_the_program() {
    let (stdout, code) = run_wasi_env(&[], &["-T", "4", "--dir", "x", "-v"], None);
    let expected = r#"7 args: ["wasi-std", "env", "-T", "4", "--dir", "x", "-v"]"#;
    assert!(stdout.contains(expected), "{stdout}");
    assert_eq!(code, Some(7));
    // A `--` after the first argument is the program's too.
    let (stdout, _) = run_wasi_env(&["--"], &["--", "x"], None);
    assert!(stdout.contains(r#"["wasi-std", "env", "--", "x"]"#), "{stdout}");
}

#[test]
fn env_sets_a_variable_or_passes_the_hosts() {
    let (stdout, _) = run_wasi_env(&["--env", "NEBULET_TEST=set=here"], &[], Some("the host's"));
    assert!(stdout.contains("wasi-std env: NEBULET_TEST=set=here\n"), "{stdout}");
    let (stdout, _) = run_wasi_env(&["--env", "NEBULET_TEST"], &[], Some("the host's"));
    assert!(stdout.contains("wasi-std env: NEBULET_TEST=the host's\n"), "{stdout}");
    // Not passed unless named; named but unset here, the program does not have it.
    for arguments in [&[][..], &["--env", "NEBULET_TEST"][..]] {
        let host = if arguments.is_empty() { Some("the host's") } else { None };
        let (stdout, _) = run_wasi_env(arguments, &[], host);
        assert!(
            stdout.contains("wasi-std env: NEBULET_TEST environment variable not found"),
            "{stdout}"
        );
    }
}

#[test]
fn bad_env_and_dir_spellings_are_refused_before_anything_runs() {
    let path = write_temporary("never.wat", "(module (func (export \"_start\") unreachable))");
    for bad in [["--env", "=value"], ["--dir", "::/guest"], ["--dir", "host::"]] {
        let output = nebulet().arg("run").args(bad).arg(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.starts_with("error: invalid value"), "{bad:?}: {stderr}");
    }
}

#[test]
fn run_reports_a_module_that_does_not_load_on_one_line() {
    let path = write_temporary("broken.wat", "(module (func (export \"_start\") i32.add))");
    let output = nebulet().arg("run").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("nebulet: cannot load"), "{stderr}");
    assert!(stderr.contains("broken.wat"), "{stderr}");
    let missing = nebulet().args(["run", "/no/such/file.wasm"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("cannot read /no/such/file.wasm"));
}

#[test]
fn run_reports_a_trap_with_the_process_and_its_backtrace() {
    let path = write_temporary(
        "trap.wat",
        "(module (func $deep unreachable) (func (export \"_start\") call $deep))",
    );
    let output = nebulet().arg("run").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("nebulet: process `trap` trapped:"), "{stderr}");
    assert!(stderr.contains("wasm backtrace: deep"), "{stderr}");
}

#[test]
fn the_default_command_boots_the_demo_system() {
    let output = nebulet().output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("init: all"), "{stdout}");
    // The first line says what runs, on stderr (stdout is the processes' own).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("nebulet: booting the demo system on a Nebulet kernel"), "{stderr}");
    assert!(stderr.contains("Every line below is printed by a wasm process"), "{stderr}");
    assert!(!stdout.contains("koid"), "no unexplained jargon: {stdout}");
}

/// Runs `nebulet run PATH` and returns its one line of stderr, asserting it failed with code 1.
fn run_fails_with_one_line(path: &std::path::Path) -> String {
    let output = nebulet().arg("run").arg(path).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn run_refuses_empty_and_garbage_files_on_one_line() {
    let empty = write_temporary("empty.wasm", "");
    assert_eq!(run_fails_with_one_line(&empty), format!("nebulet: {} is empty\n", empty.display()));
    let garbage = write_temporary("garbage.wasm", "");
    std::fs::write(&garbage, b"\x7fELF\x02\x01\x01\0\xff\xfe\xfd").unwrap();
    assert_eq!(
        run_fails_with_one_line(&garbage),
        format!("nebulet: {} is neither a wasm module nor wat text\n", garbage.display())
    );
}

#[test]
fn run_reports_a_wat_syntax_error_on_one_line_with_its_place() {
    let path = write_temporary("syntax.wat", "(module\n  (func (export \"_start\")\n    (oops)))");
    let stderr = run_fails_with_one_line(&path);
    assert!(stderr.starts_with("nebulet: "), "{stderr}");
    assert!(stderr.ends_with(&format!(" at {}:3:6\n", path.display())), "{stderr}");
}

#[test]
fn run_reads_at_most_a_bounded_module() {
    let start = std::time::Instant::now();
    let stderr = run_fails_with_one_line(std::path::Path::new("/dev/zero"));
    println!("nebulet run /dev/zero failed after {:?}", start.elapsed());
    assert_eq!(stderr, "nebulet: /dev/zero is larger than 256 MiB\n");
}

#[test]
fn run_verbose_shows_the_root_budget_first() {
    let path = write_temporary("quiet.wat", "(module (func (export \"_start\")))");
    let output = nebulet().args(["run", "-v"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let numbers: Vec<u64> =
        stderr.split_whitespace().filter_map(|word| word.parse().ok()).collect();
    assert!(stderr.starts_with("nebulet: root budget: "), "{stderr}");
    assert_eq!(numbers.len(), 5, "{stderr}");
    assert!(numbers.iter().all(|&number| number > 0), "{stderr}");
    let quiet = nebulet().arg("run").arg(&path).output().unwrap();
    assert!(quiet.stderr.is_empty(), "without -v nothing: {quiet:?}");
    // RUST_LOG chooses as `-v` does (and no colour where stderr is not a terminal).
    let logged = nebulet().env("RUST_LOG", "info").arg("run").arg(&path).output().unwrap();
    let stderr = String::from_utf8(logged.stderr).unwrap();
    assert!(stderr.starts_with("nebulet: root budget: "), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
    let silent = nebulet().env("RUST_LOG", "off").args(["run", "-v"]).arg(&path).output().unwrap();
    assert!(silent.stderr.is_empty(), "RUST_LOG wins over -v: {silent:?}");
}

#[test]
fn run_listen_gives_the_program_listening_sockets_from_descriptor_3() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, TcpStream};
    let directory = write_temporary("placeholder", "").with_file_name("listen");
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("wasi-std.wasm");
    std::fs::write(&path, nebulet::image::find("wasi-std").unwrap()).unwrap();
    let mut child = nebulet()
        .args(["run", "-v", "--listen", "127.0.0.1:0", "--listen", "localhost:0", "--no-cache"])
        .arg(&path)
        .args(["tcp", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `-v` names each listening address and its descriptor, after the root budget.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addresses = Vec::new();
    while addresses.len() < 2 {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "stderr ended early");
        if let Some(rest) = line.strip_prefix("nebulet: listening on ") {
            let (address, descriptor) = rest.trim_end().split_once(" (descriptor ").unwrap();
            addresses.push((address.to_string(), descriptor.trim_end_matches(')').to_string()));
        }
    }
    assert_eq!([addresses[0].1.as_str(), addresses[1].1.as_str()], ["3", "4"]);
    let mut stream = TcpStream::connect(&addresses[0].0).unwrap();
    stream.set_read_timeout(Some(crate::PATIENCE)).unwrap();
    // Large enough that the answer's end is still on its way when the program exits: the
    // command must not end before it has reached the client.
    let request = "over the network ".repeat(40_000);
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.len(), request.len());
    assert!(answer == request.to_ascii_uppercase(), "the answer arrived whole");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "wasi-std tcp: ok\n");
}

#[test]
fn run_listen_on_a_bad_or_taken_address_is_one_line() {
    let path = write_temporary("listen-args.wat", ARGUMENT_COUNTER);
    let output = nebulet().args(["run", "--listen", "nowhere"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "clap's usage error: {output:?}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = nebulet().args(["run", "--listen", &address]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr.starts_with(&format!("nebulet: cannot listen on {address}:")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn run_says_plain_text_is_neither_wasm_nor_wat() {
    let text = write_temporary("notes.wasm", "hello world\n");
    assert_eq!(
        run_fails_with_one_line(&text),
        format!("nebulet: {} is neither a wasm module nor wat text\n", text.display())
    );
}

#[test]
fn run_says_what_start_should_look_like() {
    let path = write_temporary("params.wat", r#"(module (func (export "_start") (param i32)))"#);
    assert_eq!(
        run_fails_with_one_line(&path),
        "nebulet: process `params` cannot start: `_start` must take no parameters and return \
         nothing, but it is `(func (param i32))`\n"
    );
}

#[test]
fn run_names_an_import_with_the_wrong_signature() {
    let path = write_temporary(
        "import.wat",
        r#"(module (import "nebulet" "clock_monotonic" (func (param i32) (result i64)))
                   (func (export "_start")))"#,
    );
    assert_eq!(
        run_fails_with_one_line(&path),
        "nebulet: process `import` cannot start: incompatible import type for \
         `nebulet::clock_monotonic`: the module imports it as `(func (param i32) (result i64))`, \
         but it is `(func (result i64))`\n"
    );
}

#[test]
fn run_with_the_name_of_an_embedded_app_runs_it() {
    let output = nebulet().args(["run", "hello"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.starts_with("hello from nebulet\n"), "{stdout}");
    // A service needs init: it says so, rather than only "no bootstrap channel".
    let output = nebulet().args(["run", "echo"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("echo: no bootstrap channel: this app is started by another process"),
        "{stdout}"
    );
    assert!(stdout.contains("nebulet demo"), "{stdout}");
}

#[test]
fn apps_ends_quietly_when_its_reader_is_gone() {
    // The read end is closed before the command writes: every write meets a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = nebulet().arg("apps").stdout(writer).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_rust_panic_shows_the_programs_frames_and_verbose_shows_all() {
    let path = write_temporary("panics.wasm", "");
    std::fs::write(&path, nebulet::image::find("wasi-std").unwrap()).unwrap();
    let run = |verbose: &[&str]| {
        let output = nebulet()
            .arg("run")
            .args(verbose)
            .arg(&path)
            .args(["files", "/nowhere"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        stderr.lines().last().unwrap().to_string()
    };
    let short = run(&[]);
    assert!(
        short.ends_with(
            "wasm backtrace: wasi_std::check::{{closure}} <- wasi_std::files <- wasi_std::main \
             (14 frames of std and libc hidden, -v shows them)"
        ),
        "{short}"
    );
    let long = run(&["-v"]);
    assert!(long.contains("<- std::process::abort <-"), "{long}");
    assert!(long.ends_with("<- wasi_std::main <- std::sys::backtrace::__rust_begin_short_backtrace <- __main_void <- _start"), "{long}");
}

/// A scratch folder for `nebulet new` projects, inside the target directory.
fn projects_folder(what: &str) -> std::path::PathBuf {
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nebulet-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    parent
}

/// The repository's root.
fn checkout() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `nebulet new NAME --sdk-path CHECKOUT` in `parent`: the project's folder.
fn new_project(parent: &std::path::Path, name: &str) -> std::path::PathBuf {
    let output = nebulet()
        .args(["new", name, "--sdk-path"])
        .arg(checkout())
        .current_dir(parent)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    parent.join(name)
}

/// `cargo ARGUMENTS --offline --quiet` in a project, with `nebulet run` (this build's) as the
/// wasm32-wasip1 runner; asserts success and returns stdout.
fn cargo_in(project: &std::path::Path, arguments: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let runner = format!("{} run", env!("CARGO_BIN_EXE_nebulet"));
    let output = Command::new(cargo)
        .args(arguments)
        .args(["--offline", "--quiet"])
        .current_dir(project)
        .env("CARGO_TARGET_WASM32_WASIP1_RUNNER", runner)
        // This test's own build settings must not reach the project's build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `nebulet new` with the SDK as a relative path dependency: the project builds for
/// wasm32-wasip1 without the network (the SDK has no dependencies outside this repository)
/// and `cargo run` runs it through `nebulet run`, its configured runner.
#[test]
fn nebulet_new_makes_a_project_that_builds_and_runs() {
    let parent = projects_folder("new");
    let project = new_project(&parent, "hello-app");
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    // The path leads from the project to crates/sip: relative when both share a folder.
    let path = manifest.split("sip = { path = \"").nth(1).and_then(|rest| rest.split('"').next());
    let path = path.unwrap_or_else(|| panic!("no path dependency: {manifest}"));
    let sip = checkout().join("crates/sip").canonicalize().unwrap();
    assert_eq!(project.join(path).canonicalize().unwrap(), sip, "{manifest}");
    let project_root = project.canonicalize().unwrap();
    let shares_a_folder = sip.components().nth(1) == project_root.components().nth(1);
    assert_eq!(path.starts_with(".."), shares_a_folder, "{manifest}");
    let again = nebulet().args(["new", "hello-app"]).current_dir(&parent).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "an existing directory is refused");

    let stdout = cargo_in(&project, &["run", "--release"]);
    assert_eq!(stdout, "hello-app: received \"hello over a channel\" with 1 handle\n");
    assert!(project.join("target/wasm32-wasip1/release/hello-app.wasm").is_file());
    std::fs::remove_dir_all(&parent).unwrap();
}

/// The body of the first fenced block of `docs/tutorial.md` that starts after the text
/// `marker`.
fn tutorial_block(marker: &str) -> String {
    let tutorial = std::fs::read_to_string(checkout().join("docs/tutorial.md")).unwrap();
    let at = tutorial.find(marker).expect("the marker is in the tutorial") + marker.len();
    let mut fences = tutorial[at..].match_indices("```").map(|(index, _)| at + index);
    // Past a fence that closes the block the marker is in, if it is in one.
    let inside = tutorial[..at].matches("```").count() % 2 == 1;
    if inside {
        fences.next();
    }
    let (open, close) = (fences.next().unwrap(), fences.next().unwrap());
    let block = &tutorial[open..close];
    block.split_once('\n').unwrap().1.to_string()
}

/// The tutorial's service and client (step 2) build and print what the tutorial shows.
#[test]
fn the_tutorials_service_runs_as_written() {
    let parent = projects_folder("tutorial");
    let project = new_project(&parent, "greeter");
    let code = tutorial_block("Replace `src/main.rs` with:");
    std::fs::write(project.join("src/main.rs"), code).unwrap();
    cargo_in(&project, &["build", "--release"]);
    let built = project.join("target/wasm32-wasip1/release");
    let output = nebulet()
        .arg("run")
        .arg("--dir")
        .arg(format!("{}::/app", built.display()))
        .arg(built.join("greeter.wasm"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let shown = tutorial_block("nebulet run --dir target/wasm32-wasip1/release::/app");
    assert_eq!(String::from_utf8_lossy(&output.stdout), shown);
    std::fs::remove_dir_all(&parent).unwrap();
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`): the whole answer.
fn http_request(address: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(crate::PATIENCE)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serve_metrics_counts_requests_in_the_prometheus_format_and_serve_answers_ps() {
    use std::io::{BufRead, BufReader};
    let path = write_temporary("metered.wasm", "");
    std::fs::write(&path, nebulet::image::find("http-echo").unwrap()).unwrap();
    let socket = path.with_file_name("serve.sock");
    let mut child = nebulet()
        .arg("serve")
        .arg(&path)
        .args(["--addr", "127.0.0.1:0", "--metrics", "--control"])
        .arg(&socket)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line.trim_end().rsplit("http://").next().unwrap().to_string();
    for body in ["one", "two"] {
        let answer = http_request(&address, "POST", "/echo", body);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with(body), "{answer}");
    }
    let page = http_request(&address, "GET", "/metrics", "");
    let refused = http_request(&address, "POST", "/metrics", "");
    // `serve --control` answers `ps` too (between requests no handler runs).
    let listing = nebulet().args(["ps", "--control"]).arg(&socket).output().unwrap();
    let _ = child.kill();
    assert_eq!(listing.status.code(), Some(0), "{listing:?}");
    assert!(String::from_utf8_lossy(&listing.stdout).trim_start().starts_with("ID  NAME"));
    let _ = child.wait();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("content-type: text/plain; version=0.0.4"), "{page}");
    for expected in [
        "nebulet_serve_requests_total{status=\"200\"} 2\n",
        "nebulet_serve_request_duration_seconds_bucket{le=\"30\"} 2\n",
        "nebulet_serve_request_duration_seconds_count 2\n",
        "# TYPE nebulet_serve_request_duration_seconds histogram\n",
        "# TYPE nebulet_live_processes gauge\n",
        "# TYPE nebulet_memory_bytes gauge\n",
        "# TYPE process_resident_memory_bytes gauge\n",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    let resident: f64 = page
        .lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(resident > 1e6, "{page}");
    assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
}

/// The tutorial's HTTP handler (step 3) builds, and `nebulet serve` answers as the tutorial
/// shows.
#[test]
fn the_tutorials_http_endpoint_answers_as_written() {
    use std::io::{BufRead, BufReader};
    let parent = projects_folder("tutorial-http");
    let project = new_project(&parent, "hello-http");
    let code = tutorial_block("and give it this `src/main.rs`:");
    std::fs::write(project.join("src/main.rs"), code).unwrap();
    cargo_in(&project, &["build", "--release"]);
    let mut child = nebulet()
        .arg("serve")
        .arg(project.join("target/wasm32-wasip1/release/hello-http.wasm"))
        .args(["--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim_end().rsplit("http://").next().unwrap().to_string();
    let greet = http_request(&address, "GET", "/greet", "");
    let named = http_request(&address, "POST", "/", "tutorial");
    let _ = child.kill();
    let _ = child.wait();
    let body = |answer: &str| answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string());
    let shown = tutorial_block("kill %1\n```");
    assert_eq!(
        format!("{}{}", body(&greet).unwrap(), body(&named).unwrap()),
        shown,
        "{greet}\n{named}"
    );
    std::fs::remove_dir_all(&parent).unwrap();
}
