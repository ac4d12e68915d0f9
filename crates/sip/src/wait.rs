//! [`wait_many`]: waiting on several objects at once.

use nebulet_abi::{Error, RawHandle, Signals, WAIT_MANY_MAX_ITEMS, layout};

use crate::handle::Handle;
use crate::sys;

/// One object to wait on with [`wait_many`].
///
/// It names the handle by its raw value and does not borrow it: keep the handle open while
/// waiting (a closed value makes the wait fail with [`Error::BadHandle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitItem {
    /// The raw handle value (see [`Handle::as_raw`]); needs [`Rights::WAIT`](crate::Rights::WAIT).
    pub handle: RawHandle,
    /// The signals that end the wait.
    pub wait_for: Signals,
    /// Filled by [`wait_many`]: the object's signals when the wait ended.
    pub pending: Signals,
}

impl WaitItem {
    /// Waits on `handle` (a [`Handle`] or a typed handle) for any of `wait_for`.
    pub fn new(handle: &impl AsRef<Handle>, wait_for: Signals) -> WaitItem {
        WaitItem { handle: handle.as_ref().as_raw(), wait_for, pending: Signals::NONE }
    }

    /// Whether the wait ended with any of `signals` asserted on this object.
    pub fn is_pending(&self, signals: Signals) -> bool {
        self.pending.intersects(signals)
    }
}

/// Blocks until any item has one of its `wait_for` signals asserted, or `deadline` passes
/// ([`Error::TimedOut`]). Either way every item's `pending` is filled. At most
/// [`WAIT_MANY_MAX_ITEMS`] (64) items ([`Error::InvalidArgs`] otherwise).
pub fn wait_many(items: &mut [WaitItem], deadline: i64) -> Result<(), Error> {
    const MAX: usize = WAIT_MANY_MAX_ITEMS as usize;
    if items.len() > MAX {
        return Err(Error::InvalidArgs);
    }
    let mut buffer = [0u8; MAX * layout::WaitItem::SIZE];
    for (item, chunk) in items.iter().zip(buffer.chunks_exact_mut(layout::WaitItem::SIZE)) {
        let encoded =
            layout::WaitItem { handle: item.handle, wait_for: item.wait_for.bits(), pending: 0 }
                .to_bytes();
        chunk.copy_from_slice(&encoded);
    }
    let status = sys::object_wait_many(&mut buffer, items.len(), deadline);
    if matches!(status, Ok(()) | Err(Error::TimedOut)) {
        for (item, chunk) in items.iter_mut().zip(buffer.chunks_exact(layout::WaitItem::SIZE)) {
            let mut bytes = [0u8; layout::WaitItem::SIZE];
            bytes.copy_from_slice(chunk);
            item.pending = Signals::from_bits(layout::WaitItem::from_bytes(&bytes).pending);
        }
    }
    status
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::*;

    #[test]
    fn too_many_items_is_invalid_args() {
        let mut items =
            vec![WaitItem { handle: 1, wait_for: Signals::READABLE, pending: Signals::NONE }; 65];
        assert_eq!(wait_many(&mut items, 0), Err(Error::InvalidArgs));
        assert_eq!(wait_many(&mut items[..64], 0), Err(Error::NotSupported));
    }
}
