//! The on-disk cache of compiled modules: one file per module and engine, bounded in size.
//!
//! An entry is named by its key, BLAKE3 of the engine's [`Fingerprint`] and the module's wasm
//! binary, and holds a compiled-module file (see `compiled`). An entry that does not load —
//! truncated, damaged, from another engine — is removed and, once the module is compiled
//! again, replaced. Entries are written to a temporary file in the same directory and renamed,
//! so a reader sees a whole entry or none. Past the size bound the oldest entries (by
//! modification time; a hit refreshes it) are removed, so however many modules programs
//! compile, the directory stays within the bound (give or take what other nebulet commands
//! write at the same moment).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use wasmtime::{Engine, Module};

use crate::compiled::{self, Fingerprint};

/// The default size bound of the cache directory.
pub const DEFAULT_CACHE_LIMIT: u64 = 1 << 30;

/// The environment variable that names the cache directory instead of the XDG one.
pub const CACHE_DIRECTORY_VARIABLE: &str = "NEBULET_CACHE_DIR";

/// How an entry file's name ends.
const ENTRY_SUFFIX: &str = ".module";

/// How a temporary file's name ends (it starts with a dot).
const TEMPORARY_SUFFIX: &str = ".tmp";

/// A temporary file older than this was left by a writer that died; removed when seen.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// What the cache did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStatistics {
    /// Modules loaded from an entry.
    pub hits: u64,
    /// Modules with no entry.
    pub misses: u64,
    /// Entries that did not load (truncated, damaged, foreign), removed.
    pub rejected: u64,
    /// Entries written.
    pub stored: u64,
    /// Entries removed to keep within the bound.
    pub evicted: u64,
}

/// A directory of compiled modules.
#[derive(Debug)]
pub struct ModuleCache {
    directory: PathBuf,
    limit: u64,
    /// What this cache believes the directory holds, in bytes: `None` until the first write,
    /// which lists the directory. Writes add to it; past the bound the directory is listed again.
    size: Mutex<Option<u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    stored: AtomicU64,
    evicted: AtomicU64,
}

impl ModuleCache {
    /// Where the cache is by default: `$NEBULET_CACHE_DIR` if set, else `nebulet` in the XDG
    /// cache directory (`$XDG_CACHE_HOME`, or `~/.cache`). `None` if there is no home.
    pub fn default_directory() -> Option<PathBuf> {
        match std::env::var_os(CACHE_DIRECTORY_VARIABLE) {
            Some(directory) if !directory.is_empty() => Some(PathBuf::from(directory)),
            _ => directories::ProjectDirs::from("", "", "nebulet")
                .map(|project| project.cache_dir().to_path_buf()),
        }
    }

    /// Opens the cache in `directory`, creating it (readable by the user alone) if needed, with
    /// at most `limit` bytes of entries. Refuses a directory that another user owns or that
    /// others may write to: entries hold machine code that runs as this user.
    pub fn open(directory: &Path, limit: u64) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let failed = |error: std::io::Error| {
            format!("cannot use {} as the module cache: {error}", directory.display())
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(directory).map_err(failed)?;
        let status = rustix::fs::stat(directory).map_err(|error| failed(error.into()))?;
        let refuse =
            |why: &str| format!("not using {} as the module cache: {why}", directory.display());
        if status.st_uid != rustix::process::getuid().as_raw() {
            return Err(refuse("another user owns it"));
        }
        if status.st_mode & 0o022 != 0 {
            return Err(refuse("others can write to it"));
        }
        Ok(Self {
            directory: directory.to_path_buf(),
            limit,
            size: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// The cache's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// What the cache did so far.
    pub fn statistics(&self) -> CacheStatistics {
        CacheStatistics {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.directory.join(format!("{key}{ENTRY_SUFFIX}"))
    }

    /// The module of entry `key` compiled by `engine`, if there is one that loads. An entry
    /// that does not load is removed.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        fingerprint: Fingerprint,
        key: &str,
    ) -> Option<Module> {
        let path = self.entry(key);
        let Ok(file) = std::fs::File::open(&path) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        // An entry is never larger than the bound: a larger file is not one of ours. Sized up
        // front: entries are megabytes, and a growing buffer would copy them again and again.
        let size = file.metadata().map_or(0, |metadata| metadata.len()).min(self.limit);
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let read = (&file).take(self.limit.saturating_add(1)).read_to_end(&mut bytes);
        let loaded = match read {
            Ok(length) if (length as u64) <= self.limit => {
                compiled::load(engine, fingerprint, &bytes).ok()
            }
            _ => None,
        };
        match loaded {
            Some(module) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                // The eviction order: recently used entries go last.
                let _ = file.set_modified(SystemTime::now());
                Some(module)
            }
            None => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `module`, compiled by `engine`, as entry `key`. A cache is no promise: an entry
    /// that cannot be written (a full disk, a larger entry than half the bound) is skipped.
    pub(crate) fn store(&self, engine: &Engine, key: &str, module: &Module) {
        let Ok(file) = compiled::serialize(engine, module) else { return };
        let length = file.len() as u64;
        if length > self.limit / 2 {
            return;
        }
        if self.write(key, &file).is_err() {
            return;
        }
        self.stored.fetch_add(1, Ordering::Relaxed);
        let mut size = self.size.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let estimate = match *size {
            Some(before) => before.saturating_add(length),
            None => self.evict(),
        };
        *size = Some(if estimate > self.limit { self.evict() } else { estimate });
    }

    /// Writes `bytes` to a temporary file, then renames it to entry `key`.
    fn write(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temporary = self.directory.join(format!(
            ".{key}.{}.{}{TEMPORARY_SUFFIX}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(bytes))
            .and_then(|()| std::fs::rename(&temporary, self.entry(key)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    /// Lists the directory and removes the oldest entries until they take at most nine tenths
    /// of the bound (so that the next listing is many writes away), if they took more than the
    /// bound; removes stale temporary files. Returns the bytes left.
    fn evict(&self) -> u64 {
        let Ok(listing) = std::fs::read_dir(&self.directory) else { return 0 };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        let mut total = 0u64;
        for item in listing.flatten() {
            let name = item.file_name();
            let name = name.to_string_lossy();
            let Ok(metadata) = item.metadata() else { continue };
            if !metadata.is_file() {
                continue;
            }
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.ends_with(TEMPORARY_SUFFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > STALE_TEMPORARY && std::fs::remove_file(item.path()).is_ok() {
                    continue;
                }
                total = total.saturating_add(metadata.len());
            } else if name.ends_with(ENTRY_SUFFIX) {
                total = total.saturating_add(metadata.len());
                entries.push((modified, metadata.len(), item.path()));
            }
        }
        if total <= self.limit {
            return total;
        }
        entries.sort();
        let target = self.limit / 10 * 9;
        for (_, length, path) in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(length);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        total
    }
}
