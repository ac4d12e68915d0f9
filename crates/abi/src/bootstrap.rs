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
//! The manifest is text, one directive a line; `#` starts a comment:
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

/// One directive of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive<'a> {
    /// Start the named app as a service.
    Service(&'a str),
    /// Start the named app as a task.
    Start(&'a str),
}

/// A manifest line that is not a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestError<'a> {
    /// The 1-based line number.
    pub line: usize,
    /// The text of the line.
    pub text: &'a str,
}

impl core::fmt::Display for ManifestError<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "manifest line {}: expected `service NAME` or `start NAME`, found `{}`",
            self.line, self.text
        )
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
        let mut words = line.split_whitespace();
        Some(match (words.next(), words.next(), words.next()) {
            (Some("service"), Some(name), None) => Ok(Directive::Service(name)),
            (Some("start"), Some(name), None) => Ok(Directive::Start(name)),
            _ => Err(ManifestError { line: index + 1, text: raw }),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_directives_and_errors() {
        let text = "# demo\nservice echo\n\n  start ping # client\nbogus line\n";
        let mut directives = parse_manifest(text);
        assert_eq!(directives.next(), Some(Ok(Directive::Service("echo"))));
        assert_eq!(directives.next(), Some(Ok(Directive::Start("ping"))));
        assert_eq!(directives.next(), Some(Err(ManifestError { line: 5, text: "bogus line" })));
        assert_eq!(directives.next(), None);
    }
}
