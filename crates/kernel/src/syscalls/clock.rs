//! Clock calls: `clock_monotonic` is linked directly; `nanosleep` blocks.

use nebulet_abi::Error;
use wasmtime::Caller;

use crate::runner::ThreadContext;

pub(super) async fn nanosleep(
    caller: &mut Caller<'_, ThreadContext>,
    deadline: i64,
) -> Result<(), Error> {
    let platform = caller.data().kernel.platform.clone();
    crate::wait::sleep_until(&*platform, deadline).await;
    Ok(())
}
