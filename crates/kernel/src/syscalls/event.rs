//! Event calls.

use alloc::sync::Arc;

use nebulet_abi::{Error, Rights};

use super::Call;
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::event::Event;

pub(super) fn create(call: &mut Call<'_>, out: u32) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let entry = HandleEntry::new(Object::Event(Arc::new(Event::new())), Rights::EVENT_DEFAULT);
    let value = call.process.handles.lock().insert(entry)?;
    call.memory.write_u32(out, value)
}
