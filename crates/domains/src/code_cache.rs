//! Code that domains compiled, kept by the process that starts them for later domains of the
//! same module: opaque bytes this process never loads, only hands to domains, which load them
//! inside their sandbox (see `docs/domains.md`, "Compiled code shared between domains").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// A module's key: the BLAKE3 hash of its bytes (`.wasm` or `.wat`), as this process got them.
pub(crate) type Key = [u8; 32];

/// The most code a domain may send back (a domain with more sends none), and so the most this
/// process reads for it.
pub(crate) const MAX_CODE_BYTES: usize = 16 << 20;

/// The most code kept; the oldest goes first.
const CAPACITY_BYTES: usize = 64 << 20;

static CACHE: Mutex<Cache> = Mutex::new(Cache { entries: None, order: VecDeque::new(), bytes: 0 });

struct Cache {
    entries: Option<HashMap<Key, Arc<Vec<u8>>>>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// The key of `module`.
pub(crate) fn key(module: &[u8]) -> Key {
    *blake3::hash(module).as_bytes()
}

/// The code a domain compiled for the module of `key`, if one did.
pub(crate) fn get(key: &Key) -> Option<Arc<Vec<u8>>> {
    let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache.entries.as_ref()?.get(key).cloned()
}

/// Keeps `code`, which a domain compiled from the module of `key` (the first one given for a
/// key stays).
pub(crate) fn put(key: Key, code: Vec<u8>) {
    if code.is_empty() || code.len() > MAX_CODE_BYTES {
        return;
    }
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let Cache { entries, order, bytes } = &mut *cache;
    let entries = entries.get_or_insert_with(HashMap::new);
    if entries.contains_key(&key) {
        return;
    }
    while *bytes + code.len() > CAPACITY_BYTES {
        let Some(oldest) = order.pop_front() else { break };
        if let Some(removed) = entries.remove(&oldest) {
            *bytes -= removed.len();
        }
    }
    *bytes += code.len();
    order.push_back(key);
    entries.insert(key, Arc::new(code));
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_is_kept_by_its_modules_key_and_the_first_stays() {
        let key = super::key(b"(module)");
        assert_ne!(key, super::key(b"(module )"));
        assert!(super::get(&key).is_none());
        super::put(key, vec![1, 2, 3]);
        super::put(key, vec![4]);
        assert_eq!(super::get(&key).as_deref(), Some(&vec![1, 2, 3]));
        let too_big = super::key(b"too big");
        super::put(too_big, vec![0; super::MAX_CODE_BYTES + 1]);
        assert!(super::get(&too_big).is_none());
    }
}
