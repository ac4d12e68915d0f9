//! The control socket: a Unix socket (mode 0600, so only this user) on which a running
//! `nebulet run` or `nebulet demo` lists its processes, and `nebulet ps`, which asks it.
//!
//! A client writes one line, `table`, `json` or `fields` (tab-separated cells, for `nebulet
//! top`), and reads the listing until the socket closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nebulet_hosted::Kernel;
use nebulet_kernel::ProcessSummary;

/// The socket this command opened, removed when it exits.
static OPENED: OnceLock<PathBuf> = OnceLock::new();

/// Opens the control socket at `path` and answers on a thread of its own.
pub(crate) fn open(kernel: &Arc<Kernel>, path: &Path) -> Result<(), String> {
    let cannot = |error: std::io::Error| {
        format!("cannot open the control socket {}: {error}", path.display())
    };
    // A socket left by a command that is gone (nobody answers) is replaced; a live one is not.
    if path.exists() && UnixStream::connect(path).is_err() {
        std::fs::remove_file(path).map_err(cannot)?;
    }
    let listener = UnixListener::bind(path).map_err(cannot)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(cannot)?;
    let _ = OPENED.set(path.to_path_buf());
    let kernel = kernel.clone();
    std::thread::Builder::new()
        .name("nebulet-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // One client at a time: a listing is quick, and a client that never asks holds
                // only itself up until it closes.
                let _ = answer(&kernel, stream);
            }
        })
        .map_err(cannot)?;
    Ok(())
}

/// Removes the control socket this command opened, if any (at its exit).
pub(crate) fn close() {
    if let Some(path) = OPENED.get() {
        let _ = std::fs::remove_file(path);
    }
}

fn answer(kernel: &Kernel, stream: UnixStream) -> std::io::Result<()> {
    let mut request = String::new();
    BufReader::new(stream.try_clone()?).take(64).read_line(&mut request)?;
    let processes = kernel.processes();
    let text = match request.trim() {
        "json" => json(&processes),
        "fields" => fields(&processes),
        _ => table(&processes),
    };
    (&stream).write_all(text.as_bytes())
}

/// What the command whose control socket is `path` answers to `format` (`table`, `json` or
/// `fields`).
pub(crate) fn ask(path: &Path, format: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|error| {
        format!(
            "cannot reach {}: {error} (start `nebulet run` or `nebulet demo` with --control {})",
            path.display(),
            path.display()
        )
    })?;
    stream.write_all(format!("{format}\n").as_bytes()).map_err(|error| error.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|error| error.to_string())?;
    Ok(text)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no error.
pub(crate) fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.to_string()),
        _ => Ok(()),
    }
}

/// `nebulet ps`: asks the command whose control socket is `path` for its processes.
pub(crate) fn ps(path: &Path, format: &str) -> Result<u8, String> {
    print(&ask(path, format)?)?;
    Ok(0)
}

/// The column titles of [`cells`].
pub(crate) const COLUMNS: [&str; 10] =
    ["ID", "NAME", "STATE", "THREADS", "CPU", "MEMORY", "HANDLES", "QUEUED", "RESTARTS", "DOMAIN"];

/// One process's cells, as `ps` shows them: the state with what a blocked one waits in
/// (`blocked:sleep`), CPU time in seconds, memory in KiB, queued bytes.
fn cells(process: &ProcessSummary) -> [String; 10] {
    let state = match process.blocked_on {
        Some(call) => format!("{}:{call}", process.state.name()),
        None => process.state.name().to_string(),
    };
    [
        process.koid.to_string(),
        process.name.clone(),
        state,
        process.threads.to_string(),
        format!("{:.3}s", process.cpu_nanoseconds as f64 / 1e9),
        format!("{}K", process.memory_bytes.div_ceil(1024)),
        process.handles.to_string(),
        format!("{}B", process.queued_bytes),
        process.restarts.to_string(),
        process.domain.clone(),
    ]
}

/// The processes as a table, one line each.
fn table(processes: &[ProcessSummary]) -> String {
    let line = |cells: &[&str]| {
        format!(
            "{:>8}  {:<16} {:<14} {:>7} {:>10} {:>10} {:>7} {:>10} {:>8}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9]
        )
    };
    let mut text = line(&COLUMNS);
    for process in processes {
        let cells = cells(process);
        text.push_str(&line(&cells.each_ref().map(String::as_str)));
    }
    text
}

/// The processes as lines of tab-separated [`cells`] (tabs and line breaks in names become
/// spaces), for `nebulet top`.
fn fields(processes: &[ProcessSummary]) -> String {
    let mut text = String::new();
    for process in processes {
        let cells = cells(process).map(|cell| cell.replace(['\t', '\n', '\r'], " "));
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    text
}

/// The processes as a JSON array of objects, for scripts.
fn json(processes: &[ProcessSummary]) -> String {
    let objects: Vec<String> = processes
        .iter()
        .map(|process| {
            format!(
                "{{\"id\":{},\"name\":{},\"state\":\"{}\",\"blocked_on\":{},\"threads\":{},\
                 \"cpu_nanoseconds\":{},\"memory_bytes\":{},\"handles\":{},\"queued_bytes\":{},\
                 \"restarts\":{},\"domain\":{}}}",
                process.koid,
                json_string(&process.name),
                process.state.name(),
                process.blocked_on.map_or_else(|| "null".to_string(), json_string),
                process.threads,
                process.cpu_nanoseconds,
                process.memory_bytes,
                process.handles,
                process.queued_bytes,
                process.restarts,
                json_string(&process.domain)
            )
        })
        .collect();
    format!("[{}]\n", objects.join(","))
}

/// A JSON string literal. Written by hand: a few string fields do not warrant a JSON crate.
fn json_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            control if u32::from(control) < 0x20 => {
                quoted.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebulet_kernel::RunState;

    #[test]
    fn json_escapes_names() {
        let process = ProcessSummary {
            koid: 7,
            name: "a\"b\\c\n\u{1}".into(),
            state: RunState::Blocked,
            blocked_on: Some("sleep"),
            threads: 1,
            cpu_nanoseconds: 2,
            memory_bytes: 3,
            handles: 4,
            queued_bytes: 5,
            restarts: 6,
            domain: "local".into(),
        };
        assert_eq!(
            json(std::slice::from_ref(&process)),
            "[{\"id\":7,\"name\":\"a\\\"b\\\\c\\n\\u0001\",\"state\":\"blocked\",\
             \"blocked_on\":\"sleep\",\"threads\":1,\"cpu_nanoseconds\":2,\"memory_bytes\":3,\
             \"handles\":4,\"queued_bytes\":5,\"restarts\":6,\"domain\":\"local\"}]\n"
        );
        assert_eq!(
            fields(&[process]),
            "7\ta\"b\\c \u{1}\tblocked:sleep\t1\t0.000s\t1K\t4\t5B\t6\tlocal\n"
        );
        assert_eq!(json(&[]), "[]\n");
    }
}
