//! Timer calls.

use alloc::sync::Arc;

use nebulet_abi::{Error, Rights};

use super::Call;
use crate::handles::HandleEntry;
use crate::objects::Object;
use crate::objects::timer::Timer;

pub(super) fn create(call: &mut Call<'_>, out: u32) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let entry = HandleEntry::new(Object::Timer(Arc::new(Timer::new())), Rights::TIMER_DEFAULT);
    let value = call.process.handles.lock().insert(entry)?;
    call.memory.write_u32(out, value)
}

fn timer(call: &Call<'_>, handle: u32) -> Result<Arc<Timer>, Error> {
    Ok(call
        .process
        .handles
        .lock()
        .get(handle)?
        .require_typed(Rights::WRITE, |entry| entry.timer())?
        .clone())
}

pub(super) fn set(call: &mut Call<'_>, handle: u32, deadline: i64) -> Result<(), Error> {
    timer(call, handle)?.set(&call.kernel.platform, deadline);
    Ok(())
}

pub(super) fn cancel(call: &mut Call<'_>, handle: u32) -> Result<(), Error> {
    timer(call, handle)?.cancel();
    Ok(())
}
