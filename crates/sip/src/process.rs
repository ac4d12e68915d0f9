//! The calling process: its bootstrap handle and its exit.

use crate::channel::Channel;
use crate::handle::Handle;
use crate::sys;

/// The handle the parent passed to [`Process::start`](crate::Process::start), the first time
/// this is called; `None` afterwards or if there was none.
pub fn bootstrap() -> Option<Handle> {
    sys::process_bootstrap().ok().and_then(Handle::from_raw)
}

/// [`bootstrap`] as a [`Channel`], which it is for the apps `init` starts (no type check).
pub fn bootstrap_channel() -> Option<Channel> {
    bootstrap().map(Channel::from_handle)
}

/// What an app that needs a bootstrap channel says when it has none: it was run directly
/// (`nebulet run APP`) instead of by the process meant to start it.
pub const NO_BOOTSTRAP: &str = "no bootstrap channel: this app is started by another process \
    (init, from a manifest line), not run on its own: try `nebulet demo`, or \
    `nebulet demo --manifest FILE` with a line naming it";

/// Ends the process with `code` (reason "exited"). std's stdout is flushed first; destructors
/// do not run, the kernel closes every handle.
pub fn exit(code: i32) -> ! {
    let _ = std::io::Write::flush(&mut std::io::stdout());
    sys::process_exit(code)
}
