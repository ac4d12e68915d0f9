//! The bootstrap protocol: how the kernel hands the system image to `init`.
//!
//! `init` is started with a channel as its bootstrap handle (`process_bootstrap`). Before `init`
//! runs, the kernel writes into it:
//! 1. one message whose bytes are [`MANIFEST_PREFIX`] followed by the manifest text, no handles;
//! 2. one message per app of the image: [`APP_PREFIX`] followed by the app's name, carrying one
//!    handle: a Module (READ|DUPLICATE|TRANSFER|EXECUTE|INSPECT) the kernel made from the image.
//!
//! 3. one message whose bytes are [`END`], no handles.
//!
//! Then the kernel closes its end. `init` hands the apps it starts the same protocol (without
//! the manifest) on their bootstrap channels, and keeps its end: a service writes [`READY`] to
//! it once it has registered its name, so `init` starts clients only after their services.
//! `init` never sees raw wasm bytes, so the same `init` runs hosted (JIT-compiled modules) and on
//! bare metal (precompiled modules).
//!
//! The manifest is text, one [`Directive`] a line; `#` starts a comment:
//! - `service NAME`: start the app NAME as a service; it runs until the system ends;
//! - `start NAME`: start the app NAME as a task; the system ends when every task has ended.
//!
//! Directives run in the order of their lines.

/// The prefix of the message that carries the manifest text.
pub const MANIFEST_PREFIX: &[u8] = b"manifest:";

/// The prefix of a message that carries one app: its name follows, its Module is the handle.
pub const APP_PREFIX: &[u8] = b"app:";

/// The bytes of the message that ends the list of apps.
pub const END: &[u8] = b"end";

/// The bytes a service writes to its bootstrap channel once it serves.
pub const READY: &[u8] = b"ready";

/// What a directive starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A service: started before the lines after it, runs until the system ends.
    Service,
    /// A task: the system ends when every task has ended.
    Task,
}

/// When a supervisor restarts an app that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never (the default).
    Never,
    /// When it ended in any way but exit code 0.
    OnFailure,
    /// Whenever it ends.
    Always,
}

/// One line of the manifest: `service NAME [OPTION...]` or `start NAME [OPTION...]`.
///
/// Options are `key=value` words:
/// - `restart=never|on-failure|always` and `restarts=COUNT/WINDOW` (at most COUNT restarts in
///   any WINDOW, a duration; default `3/10s`), for the supervisor in `init`;
/// - resource limits, set with `process_set_limit` before the app starts: `memory=SIZE`,
///   `handles=COUNT`, `queued=SIZE`, `children=COUNT`, `cpu=DURATION`;
/// - `domain=isolated|local`: whether the app runs in a hardware protection domain of its own
///   (`process_create_with` with `PROCESS_CREATE_ISOLATED`); `local`, the default, runs it in
///   init's kernel.
///
/// SIZE is bytes with an optional `K`, `M` or `G` (powers of 1024); DURATION is a number with
/// `ns`, `us`, `ms` or `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directive<'a> {
    /// Service or task.
    pub role: Role,
    /// The app's name in the image.
    pub name: &'a str,
    options: &'a str,
}

impl<'a> Directive<'a> {
    fn option(&self, key: &str) -> Option<&'a str> {
        self.options
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// The restart policy.
    pub fn restart(&self) -> Restart {
        match self.option("restart") {
            Some("on-failure") => Restart::OnFailure,
            Some("always") => Restart::Always,
            _ => Restart::Never,
        }
    }

    /// The most restarts allowed within a window: `(count, window in nanoseconds)`.
    pub fn restart_limit(&self) -> (u32, u64) {
        self.option("restarts").and_then(parse_restarts).unwrap_or((3, 10_000_000_000))
    }

    /// Whether the app runs in a domain of its own (`domain=isolated`).
    pub fn is_isolated(&self) -> bool {
        self.option("domain") == Some("isolated")
    }

    /// The resource limits the line sets, as `(limit, value)`.
    pub fn limits(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL.into_iter().filter_map(|limit| {
            let value = self.option(limit.key())?;
            Some((limit, limit.parse(value)?))
        })
    }
}

/// A resource limit of a process and its whole subtree (`process_set_limit`'s `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Limit {
    /// Bytes of memory: linear memories, tables, stacks, compiled modules, queued messages;
    /// `memory.grow` past it returns -1.
    MemoryBytes = 1,
    /// Open handles; more give `ERR_NO_RESOURCES`.
    Handles = 2,
    /// Bytes of messages queued in channels and not yet read; a write past it gives
    /// `ERR_NO_RESOURCES`.
    QueuedBytes = 3,
    /// Descendant processes created and not yet ended; more give `ERR_NO_RESOURCES`.
    Children = 4,
    /// Nanoseconds of CPU time; past it the processes end with reason "out of resources".
    CpuNanoseconds = 5,
    /// Threads; more fail to start.
    Threads = 6,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 6] = [
        Limit::MemoryBytes,
        Limit::Handles,
        Limit::QueuedBytes,
        Limit::Children,
        Limit::CpuNanoseconds,
        Limit::Threads,
    ];

    /// The limit for a raw value.
    pub fn from_raw(raw: u32) -> Option<Limit> {
        Self::ALL.into_iter().find(|limit| *limit as u32 == raw)
    }

    /// Its manifest key.
    pub const fn key(self) -> &'static str {
        match self {
            Limit::MemoryBytes => "memory",
            Limit::Handles => "handles",
            Limit::QueuedBytes => "queued",
            Limit::Children => "children",
            Limit::CpuNanoseconds => "cpu",
            Limit::Threads => "threads",
        }
    }

    /// What a value of this limit looks like, for error messages.
    const fn expected(self) -> &'static str {
        match self {
            Limit::MemoryBytes | Limit::QueuedBytes => {
                "expected a SIZE: bytes with an optional K, M or G, e.g. 64M"
            }
            Limit::Handles | Limit::Children | Limit::Threads => "expected a COUNT, e.g. 64",
            Limit::CpuNanoseconds => {
                "expected a DURATION: a number with ns, us, ms or s, e.g. 250ms"
            }
        }
    }

    fn parse(self, value: &str) -> Option<u64> {
        match self {
            Limit::MemoryBytes | Limit::QueuedBytes => parse_size(value),
            Limit::Handles | Limit::Children | Limit::Threads => value.parse().ok(),
            Limit::CpuNanoseconds => parse_duration(value),
        }
    }
}

/// A SIZE of the manifest: bytes with an optional `K`, `M` or `G` (powers of 1024), e.g. `64K`.
pub fn parse_size(text: &str) -> Option<u64> {
    let (number, scale) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// A DURATION of the manifest, in nanoseconds: a number with `ns`, `us`, `ms` or `s`, e.g.
/// `500ms`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let (number, scale) = if let Some(number) = text.strip_suffix("ns") {
        (number, 1)
    } else if let Some(number) = text.strip_suffix("us") {
        (number, 1_000)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1_000_000)
    } else {
        (text.strip_suffix('s')?, 1_000_000_000)
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

fn parse_restarts(text: &str) -> Option<(u32, u64)> {
    let (count, window) = text.split_once('/')?;
    Some((count.parse().ok()?, parse_duration(window)?))
}

/// Why `word` is not an option a directive understands (`key=value` with a valid value): what
/// the option expects, or `None` when it is one.
fn option_problem(word: &str) -> Option<&'static str> {
    const KNOWN: &str = "not an option: options are restart=, restarts=, memory=, handles=, \
                         queued=, children=, cpu=, threads= and domain=";
    let Some((key, value)) = word.split_once('=') else { return Some(KNOWN) };
    let (valid, expected) = match key {
        "restart" => (
            matches!(value, "never" | "on-failure" | "always"),
            "expected never, on-failure or always",
        ),
        "restarts" => (parse_restarts(value).is_some(), "expected COUNT/DURATION, e.g. 3/10s"),
        "domain" => (matches!(value, "isolated" | "local"), "expected isolated or local"),
        _ => {
            let Some(limit) = Limit::ALL.into_iter().find(|limit| limit.key() == key) else {
                return Some(KNOWN);
            };
            (limit.parse(value).is_some(), limit.expected())
        }
    };
    if valid { None } else { Some(expected) }
}

/// A manifest line that is not a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestError<'a> {
    /// The 1-based line number.
    pub line: usize,
    /// The text of the line.
    pub text: &'a str,
    /// The option at fault, with what it expects; `None` when the line's form is wrong.
    pub option: Option<(&'a str, &'static str)>,
}

impl core::fmt::Display for ManifestError<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.option {
            Some((word, expected)) => {
                write!(formatter, "manifest line {}: `{word}`: {expected}", self.line)
            }
            None => write!(
                formatter,
                "manifest line {}: expected `service NAME [OPTION...]` or `start NAME [OPTION...]`, found `{}`",
                self.line, self.text
            ),
        }
    }
}

/// The directives of a manifest, in order, or the first line that is not one.
pub fn parse_manifest(
    text: &str,
) -> impl Iterator<Item = Result<Directive<'_>, ManifestError<'_>>> + '_ {
    text.lines().enumerate().filter_map(|(index, raw)| {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return None;
        }
        let error = ManifestError { line: index + 1, text: raw, option: None };
        let mut words = line.splitn(3, char::is_whitespace);
        let role = match words.next() {
            Some("service") => Role::Service,
            Some("start") => Role::Task,
            _ => return Some(Err(error)),
        };
        let Some(name) = words.next().filter(|name| !name.is_empty()) else {
            return Some(Err(error));
        };
        let options = words.next().unwrap_or("").trim();
        for word in options.split_whitespace() {
            if let Some(expected) = option_problem(word) {
                return Some(Err(ManifestError { option: Some((word, expected)), ..error }));
            }
        }
        Some(Ok(Directive { role, name, options }))
    })
}

/// Nanoseconds shown as seconds, for messages: `10s`, `0.5s`, `0.000001s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl core::fmt::Display for Seconds {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let whole = self.0 / 1_000_000_000;
        let mut fraction = self.0 % 1_000_000_000;
        if fraction == 0 {
            return write!(formatter, "{whole}s");
        }
        // Nine digits, without the trailing zeros.
        let mut digits = 9;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        write!(formatter, "{whole}.{fraction:0digits$}s")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn manifest_directives_and_errors() {
        let text = "# demo\nservice echo\n\n  start ping # client\nbogus line\nstart x restart=sometimes\n";
        let directives: [_; 4] = {
            let mut all = parse_manifest(text);
            core::array::from_fn(|_| all.next())
        };
        let echo = directives[0].unwrap().unwrap();
        assert_eq!((echo.role, echo.name, echo.restart()), (Role::Service, "echo", Restart::Never));
        assert_eq!(echo.restart_limit(), (3, 10_000_000_000));
        assert_eq!(echo.limits().count(), 0);
        let ping = directives[1].unwrap().unwrap();
        assert_eq!((ping.role, ping.name), (Role::Task, "ping"));
        assert_eq!(
            directives[2],
            Some(Err(ManifestError { line: 5, text: "bogus line", option: None }))
        );
        assert_eq!(
            directives[3].unwrap().unwrap_err().line,
            6,
            "an unknown option value is an error"
        );
    }

    #[test]
    fn options_and_limits() {
        let line = "service hang restart=on-failure restarts=2/5s memory=16M handles=64 cpu=250ms queued=64K children=8";
        let directive = parse_manifest(line).next().unwrap().unwrap();
        assert_eq!(directive.restart(), Restart::OnFailure);
        assert_eq!(directive.restart_limit(), (2, 5_000_000_000));
        let mut limits = [0u64; 6];
        for (limit, value) in directive.limits() {
            limits[limit as usize] = value;
        }
        assert_eq!(limits, [0, 16 << 20, 64, 64 << 10, 8, 250_000_000]);
    }

    #[test]
    fn the_domain_option_isolates_an_app() {
        let mut lines = parse_manifest("start a domain=isolated\nstart b domain=local\nstart c");
        let isolated =
            |line: Option<Result<Directive<'_>, _>>| line.unwrap().unwrap().is_isolated();
        assert!(isolated(lines.next()));
        assert!(!isolated(lines.next()));
        assert!(!isolated(lines.next()));
        let error = parse_manifest("start x domain=vm").next().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "manifest line 1: `domain=vm`: expected isolated or local");
    }

    #[test]
    fn a_bad_option_is_named_with_what_it_expects() {
        let error =
            parse_manifest("start x restart=always memory=lots").next().unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "manifest line 1: `memory=lots`: expected a SIZE: bytes with an optional K, M or G, e.g. 64M"
        );
        let error = parse_manifest("\nstart x colour=blue").next().unwrap().unwrap_err();
        assert_eq!(error.line, 2);
        assert_eq!(error.option.map(|(word, _)| word), Some("colour=blue"));
        assert!(error.to_string().contains("not an option"));
        let error = parse_manifest("start x restarts=3").next().unwrap().unwrap_err();
        assert!(error.to_string().ends_with("`restarts=3`: expected COUNT/DURATION, e.g. 3/10s"));
        let error = parse_manifest("launch x").next().unwrap().unwrap_err();
        assert!(error.to_string().contains("expected `service NAME"));
    }

    #[test]
    fn seconds_read_well() {
        for (nanos, shown) in [
            (10_000_000_000, "10s"),
            (500_000_000, "0.5s"),
            (1_250_000_000, "1.25s"),
            (1_000, "0.000001s"),
            (0, "0s"),
        ] {
            assert_eq!(Seconds(nanos).to_string(), shown);
        }
    }
}
