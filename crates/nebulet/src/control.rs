//! The control socket: a Unix socket (mode 0600, so only this user) on which a running
//! `nebulet run` or `nebulet demo` lists its processes, and `nebulet ps`, which asks it.
//!
//! A client writes one line, `table` or `json`, and reads the listing until the socket
//! closes.

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
        _ => table(&processes),
    };
    (&stream).write_all(text.as_bytes())
}

/// What the command whose control socket is `path` answers to `format` (`table` or `json`).
fn ask(path: &Path, format: &str) -> Result<String, String> {
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
fn print(text: &str) -> Result<(), String> {
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

/// `nebulet top`: the `ps` table again every `interval`, on a cleared terminal (or, when stdout
/// is not a terminal, one table after another with a blank line between), until the command
/// ends.
pub(crate) fn top(path: &Path, interval: std::time::Duration) -> Result<u8, String> {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let table = match ask(path, "table") {
            Ok(table) => table,
            // The command ended (its socket is gone): so does the view.
            Err(_) if !first => {
                eprintln!("nebulet: {}: the command ended", path.display());
                return Ok(0);
            }
            Err(message) => return Err(message),
        };
        let screen = if terminal {
            format!(
                "\x1b[H\x1b[2Jnebulet top: {} (every {interval:?}; Ctrl-C quits)\n\n{table}",
                path.display()
            )
        } else if first {
            table
        } else {
            format!("\n{table}")
        };
        print(&screen)?;
        first = false;
        std::thread::sleep(interval);
    }
}

/// The processes as a table, one line each.
fn table(processes: &[ProcessSummary]) -> String {
    let mut text = format!(
        "{:>8}  {:<16} {:>7} {:>10} {:>10} {:>7} {:>10}\n",
        "ID", "NAME", "THREADS", "CPU", "MEMORY", "HANDLES", "QUEUED"
    );
    for process in processes {
        text.push_str(&format!(
            "{:>8}  {:<16} {:>7} {:>9.3}s {:>9}K {:>7} {:>9}B\n",
            process.koid,
            process.name,
            process.threads,
            process.cpu_nanoseconds as f64 / 1e9,
            process.memory_bytes.div_ceil(1024),
            process.handles,
            process.queued_bytes
        ));
    }
    text
}

/// The processes as a JSON array of objects, for scripts.
fn json(processes: &[ProcessSummary]) -> String {
    let objects: Vec<String> = processes
        .iter()
        .map(|process| {
            format!(
                "{{\"id\":{},\"name\":{},\"threads\":{},\"cpu_nanoseconds\":{},\
                 \"memory_bytes\":{},\"handles\":{},\"queued_bytes\":{}}}",
                process.koid,
                json_string(&process.name),
                process.threads,
                process.cpu_nanoseconds,
                process.memory_bytes,
                process.handles,
                process.queued_bytes
            )
        })
        .collect();
    format!("[{}]\n", objects.join(","))
}

/// A JSON string literal. Written by hand: one string field does not warrant a JSON crate.
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

    #[test]
    fn json_escapes_names() {
        let process = ProcessSummary {
            koid: 7,
            name: "a\"b\\c\n\u{1}".into(),
            threads: 1,
            cpu_nanoseconds: 2,
            memory_bytes: 3,
            handles: 4,
            queued_bytes: 5,
        };
        assert_eq!(
            json(&[process]),
            "[{\"id\":7,\"name\":\"a\\\"b\\\\c\\n\\u0001\",\"threads\":1,\"cpu_nanoseconds\":2,\
             \"memory_bytes\":3,\"handles\":4,\"queued_bytes\":5}]\n"
        );
        assert_eq!(json(&[]), "[]\n");
    }
}
