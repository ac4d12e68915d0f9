//! A domain's stdio as the platform's console: the host's own streams, or, for a captured
//! console, pipes whose output is copied into it.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use crate::platform::Console;

/// The domain's stdin, stdout and stderr, and, for a captured console, what completes once the
/// domain's output has all been copied into it (when the domain has closed its end).
///
/// Its stdin is always empty: the host's own input stays the host's.
pub(crate) fn stdio(
    console: &Console,
) -> std::io::Result<([OwnedFd; 3], Option<tokio::sync::oneshot::Receiver<()>>)> {
    let (input, input_writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    drop(input_writer);
    match console {
        Console::Stdout => {
            let output = std::io::stdout().as_fd().try_clone_to_owned()?;
            let error = std::io::stderr().as_fd().try_clone_to_owned()?;
            Ok(([input, output, error], None))
        }
        Console::Buffer(buffer) => {
            let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            let error = writer.try_clone()?;
            let (done, forwarded) = tokio::sync::oneshot::channel();
            let buffer = buffer.clone();
            // A thread, not a task: reading a pipe blocks, and this one lives as long as the
            // domain does.
            std::thread::Builder::new().name("nebulet-domain-console".into()).spawn(move || {
                let mut reader = std::fs::File::from(reader);
                let mut chunk = [0; 4096];
                while let Ok(read) = reader.read(&mut chunk) {
                    if read == 0 {
                        break;
                    }
                    buffer
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .extend_from_slice(&chunk[..read]);
                }
                let _ = done.send(());
            })?;
            Ok(([input, writer, error], Some(forwarded)))
        }
    }
}
