//! Events: objects that are nothing but signals a program sets and clears.

use crate::wait::SignalCell;

#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) koid: u64,
    pub(crate) signals: SignalCell,
}

impl Event {
    pub(crate) fn new() -> Self {
        Self { koid: super::new_koid(), signals: SignalCell::default() }
    }
}
