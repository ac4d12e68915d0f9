//! The command's log lines on stderr: `tracing` events, shown as `nebulet: MESSAGE`.
//!
//! `-v` shows the `info` events (the root budget, listening addresses, compiles); `RUST_LOG`
//! chooses exactly (`RUST_LOG=debug`, `RUST_LOG=nebulet=info`), as `tracing-subscriber`'s
//! `EnvFilter` reads it. Warnings and errors carry their level, coloured only when stderr is
//! a terminal (and `NO_COLOR` is not set).

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Sends the events `verbose` or `RUST_LOG` choose to stderr. Called once, first.
pub(crate) fn init(verbose: bool) {
    let fallback = if verbose { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .event_format(Lines)
        .init();
}

/// `nebulet: MESSAGE`; other levels than info say theirs, other crates their name.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        write!(writer, "nebulet: ")?;
        let (word, colour) = match *metadata.level() {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warning", "33"),
            Level::INFO => ("", ""),
            Level::DEBUG => ("debug", "34"),
            Level::TRACE => ("trace", "35"),
        };
        if !word.is_empty() {
            if writer.has_ansi_escapes() {
                write!(writer, "\x1b[{colour}m{word}\x1b[0m: ")?;
            } else {
                write!(writer, "{word}: ")?;
            }
        }
        let target = metadata.target();
        if !target.starts_with("nebulet") {
            write!(writer, "{target}: ")?;
        }
        context.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
