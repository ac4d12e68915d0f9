//! Handle calls: close, duplicate, replace.

use nebulet_abi::{Error, HANDLE_INVALID, Rights};

use super::Call;
use crate::handles::HandleEntry;

pub(super) fn close(call: &mut Call<'_>, handle: u32) -> Result<(), Error> {
    if handle == HANDLE_INVALID {
        return Ok(());
    }
    let entry = call.process.handles.lock().remove(handle)?;
    // Closing may wake peers or free objects: outside the table's lock.
    drop(entry);
    Ok(())
}

/// The rights a duplicate gets: `requested` if it only drops rights, or the same rights.
fn derived_rights(current: Rights, requested: u32) -> Result<Rights, Error> {
    let requested = Rights::from_bits(requested);
    if requested == Rights::SAME_RIGHTS {
        Ok(current)
    } else if current.contains(requested) {
        Ok(requested)
    } else {
        Err(Error::InvalidArgs)
    }
}

pub(super) fn duplicate(
    call: &mut Call<'_>,
    handle: u32,
    rights: u32,
    out: u32,
) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let mut table = call.process.handles.lock();
    let entry = table.get(handle)?.require(Rights::DUPLICATE)?;
    let copy = HandleEntry::new(entry.object.clone(), derived_rights(entry.rights, rights)?);
    let value = table.insert(copy)?;
    call.memory.write_u32(out, value)
}

pub(super) fn replace(
    call: &mut Call<'_>,
    handle: u32,
    rights: u32,
    out: u32,
) -> Result<(), Error> {
    call.memory.check(out, 1, 4)?;
    let mut table = call.process.handles.lock();
    let entry = table.get(handle)?;
    let replacement = HandleEntry::new(entry.object.clone(), derived_rights(entry.rights, rights)?);
    table.remove(handle)?;
    let value = table.insert(replacement)?;
    call.memory.write_u32(out, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_never_grow() {
        let current = Rights::READ | Rights::WRITE;
        assert_eq!(derived_rights(current, Rights::SAME_RIGHTS.bits()), Ok(current));
        assert_eq!(derived_rights(current, Rights::READ.bits()), Ok(Rights::READ));
        assert_eq!(derived_rights(current, 0), Ok(Rights::NONE));
        assert_eq!(derived_rights(current, Rights::EXECUTE.bits()), Err(Error::InvalidArgs));
        assert_eq!(derived_rights(current, current.bits() | (1 << 31)), Err(Error::InvalidArgs));
    }
}
