//! The system image as the bootstrap protocol carries it (see [`nebulet_abi::bootstrap`]).
//!
//! The kernel sends `init` an optional manifest message, one `app:NAME` message per app with
//! its [`Module`] handle, then `end` (or closes its end). `init` hands the same protocol
//! (without the manifest) to the apps it starts, with [`Image::send`]; they read it with
//! [`Image::receive`].

use nebulet_abi::bootstrap::{APP_PREFIX, END, MANIFEST_PREFIX};
use nebulet_abi::{DEADLINE_INFINITE, Error, Rights};

use crate::channel::{Channel, Message};
use crate::objects::Module;

/// The apps of the system (by name, each a compiled [`Module`]) and, for `init`, the manifest.
#[derive(Debug, Default)]
pub struct Image {
    manifest: Option<String>,
    apps: Vec<(String, Module)>,
}

/// One message of the protocol, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry<'a> {
    Manifest(&'a str),
    App(&'a str),
    End,
}

/// Parses one message's bytes; `None` if it is not a message of the protocol.
fn parse_entry(bytes: &[u8]) -> Option<Entry<'_>> {
    if bytes == END {
        Some(Entry::End)
    } else if let Some(text) = bytes.strip_prefix(MANIFEST_PREFIX) {
        core::str::from_utf8(text).ok().map(Entry::Manifest)
    } else if let Some(name) = bytes.strip_prefix(APP_PREFIX) {
        core::str::from_utf8(name).ok().filter(|name| !name.is_empty()).map(Entry::App)
    } else {
        None
    }
}

impl Image {
    /// An empty image.
    pub fn new() -> Image {
        Image::default()
    }

    /// Reads an image from `channel` until the `end` message or until the peer closes,
    /// waiting as long as it takes. [`Error::InvalidArgs`] if a message does not follow the
    /// protocol (unknown bytes, an app without exactly one handle, a name or the manifest
    /// twice).
    pub fn receive(channel: &Channel) -> Result<Image, Error> {
        Image::receive_until(channel, DEADLINE_INFINITE)
    }

    /// Like [`Image::receive`], giving up at `deadline` ([`Error::TimedOut`]).
    pub fn receive_until(channel: &Channel, deadline: i64) -> Result<Image, Error> {
        let mut image = Image::new();
        let mut message = Message::new();
        loop {
            match channel.read_blocking_into(&mut message, deadline) {
                Ok(()) => {}
                Err(Error::PeerClosed) => return Ok(image),
                Err(error) => return Err(error),
            }
            match parse_entry(&message.bytes) {
                Some(Entry::End) => return Ok(image),
                Some(Entry::Manifest(text)) => {
                    if image.manifest.is_some() || !message.handles.is_empty() {
                        return Err(Error::InvalidArgs);
                    }
                    image.manifest = Some(text.to_owned());
                }
                Some(Entry::App(name)) => {
                    if message.handles.len() != 1 || image.module(name).is_some() {
                        return Err(Error::InvalidArgs);
                    }
                    let handle = message.handles.pop().ok_or(Error::InvalidArgs)?;
                    image.apps.push((name.to_owned(), Module::from_handle(handle)));
                }
                None => return Err(Error::InvalidArgs),
            }
        }
    }

    /// Sends the apps (duplicated module handles, same rights) and then `end` to `channel`,
    /// so a child can [`Image::receive`] them. The manifest is not sent. Waits while the
    /// peer's queue is full.
    pub fn send(&self, channel: &Channel) -> Result<(), Error> {
        let mut bytes = Vec::new();
        for (name, module) in &self.apps {
            let module = module.duplicate(Rights::SAME_RIGHTS)?;
            bytes.clear();
            bytes.extend_from_slice(APP_PREFIX);
            bytes.extend_from_slice(name.as_bytes());
            channel.write_blocking(&bytes, vec![module.into_handle()], DEADLINE_INFINITE)?;
        }
        channel.write_blocking(END, Vec::new(), DEADLINE_INFINITE)?;
        Ok(())
    }

    /// The manifest text, if the image came with one (only `init`'s does).
    pub fn manifest(&self) -> Option<&str> {
        self.manifest.as_deref()
    }

    /// The module of the app `name`.
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.apps.iter().find(|(app, _)| app == name).map(|(_, module)| module)
    }

    /// The names of the apps, in the order they were received or inserted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.apps.iter().map(|(name, _)| name.as_str())
    }

    /// Adds (or replaces) the app `name`.
    pub fn insert(&mut self, name: &str, module: Module) {
        match self.apps.iter_mut().find(|(app, _)| app == name) {
            Some((_, slot)) => *slot = module,
            None => self.apps.push((name.to_owned(), module)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(parse_entry(b"end"), Some(Entry::End));
        assert_eq!(
            parse_entry(b"manifest:service echo\n"),
            Some(Entry::Manifest("service echo\n"))
        );
        assert_eq!(parse_entry(b"manifest:"), Some(Entry::Manifest("")));
        assert_eq!(parse_entry(b"app:ping"), Some(Entry::App("ping")));
        assert_eq!(parse_entry(b"app:"), None);
        assert_eq!(parse_entry(b"app:\xff"), None);
        assert_eq!(parse_entry(b"ready"), None);
        assert_eq!(parse_entry(b"ends"), None);
        assert_eq!(parse_entry(b""), None);
    }

    #[test]
    fn image_lookup() {
        let image = Image::new();
        assert_eq!(image.manifest(), None);
        assert!(image.module("x").is_none());
        assert_eq!(image.names().count(), 0);
    }
}
