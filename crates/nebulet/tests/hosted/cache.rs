//! The cache of compiled modules and precompiled `.cwasm` files: hits, misses, entries that do
//! not load, the size bound, `nebulet compile`, and the command's flags.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nebulet_hosted::{
    CACHE_DIRECTORY_VARIABLE, CacheStatistics, Console, DEFAULT_CACHE_LIMIT, Emulator,
    EngineOptions, ModuleCache, ProcessOptions,
};

use super::{PATIENCE, nebulet_command};

/// A directory of its own for one test, removed at its end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "nebulet-cache-{}-{test}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program that exits with `code`.
fn exiting(code: u32) -> String {
    format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

/// An emulator whose cache is `directory`, bounded by `limit`, with the engine of `options`.
fn emulator(directory: &Path, limit: u64, options: EngineOptions) -> Emulator {
    let cache = ModuleCache::open(directory, limit).expect("the cache opens");
    let console = Console::Buffer(Arc::new(Mutex::new(Vec::new())));
    Emulator::with_cache(console, options, Some(cache)).expect("the kernel starts")
}

fn statistics(emulator: &Emulator) -> CacheStatistics {
    emulator.cache().expect("the emulator has a cache").statistics()
}

/// Compiles `source` and runs it, returning its exit code.
fn compile_and_run(emulator: &Emulator, source: &str) -> i32 {
    let module = emulator.compile(source.as_bytes()).expect("the module compiles");
    let process = emulator.kernel().spawn(module, ProcessOptions::default());
    let status = emulator
        .block_on(async { tokio::time::timeout(PATIENCE, process.wait()).await })
        .expect("the program ends");
    status.code
}

/// The cache's entries, by name, with their sizes.
fn entries(directory: &Path) -> Vec<(String, u64)> {
    let mut entries: Vec<_> = std::fs::read_dir(directory)
        .map(|listing| {
            listing
                .flatten()
                .map(|item| {
                    (
                        item.file_name().to_string_lossy().into_owned(),
                        item.metadata().unwrap().len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn a_module_compiles_once_then_loads_from_the_cache() {
    let scratch = Scratch::new("hit");
    let directory = scratch.join("cache");
    let first = emulator(&directory, DEFAULT_CACHE_LIMIT, EngineOptions::default());
    assert_eq!(compile_and_run(&first, &exiting(7)), 7);
    let after_miss = statistics(&first);
    assert_eq!((after_miss.misses, after_miss.stored, after_miss.hits), (1, 1, 0));
    let written = entries(&directory);
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].0.ends_with(".module"), "{written:?}");
    drop(first);

    // Another emulator (another run of the command) loads it.
    let second = emulator(&directory, DEFAULT_CACHE_LIMIT, EngineOptions::default());
    assert_eq!(compile_and_run(&second, &exiting(7)), 7);
    assert_eq!(compile_and_run(&second, &exiting(7)), 7);
    let after_hits = statistics(&second);
    assert_eq!((after_hits.hits, after_hits.misses, after_hits.stored), (2, 0, 0));
    // Another module is another entry; another engine configuration another one again.
    assert_eq!(compile_and_run(&second, &exiting(8)), 8);
    let dense = EngineOptions { memory_reservation: Some(0), ..EngineOptions::default() };
    let other_engine = emulator(&directory, DEFAULT_CACHE_LIMIT, dense);
    assert_eq!(compile_and_run(&other_engine, &exiting(7)), 7);
    assert_eq!(statistics(&other_engine).misses, 1);
    assert_eq!(entries(&directory).len(), 3);
}

#[test]
fn damaged_truncated_and_foreign_entries_are_refused_and_replaced() {
    let scratch = Scratch::new("bad-entries");
    let directory = scratch.join("cache");
    let source = exiting(5);
    let emulator_of = |options| emulator(&directory, DEFAULT_CACHE_LIMIT, options);
    assert_eq!(compile_and_run(&emulator_of(EngineOptions::default()), &source), 5);
    let [(name, _)] = &entries(&directory)[..] else { panic!("one entry") };
    let entry = directory.join(name);
    let whole = std::fs::read(&entry).unwrap();

    // The same module from an engine of another configuration, under this engine's key.
    let foreign_directory = scratch.join("foreign");
    let dense = EngineOptions { memory_guard_size: Some(0), ..EngineOptions::default() };
    let foreign_emulator = emulator(&foreign_directory, DEFAULT_CACHE_LIMIT, dense);
    assert_eq!(compile_and_run(&foreign_emulator, &source), 5);
    let [(foreign_name, _)] = &entries(&foreign_directory)[..] else { panic!("one entry") };
    assert_ne!(foreign_name, name, "keys name the engine");
    let foreign = std::fs::read(foreign_directory.join(foreign_name)).unwrap();

    let mut damaged = whole.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let truncated = whole[..whole.len() / 2].to_vec();
    let garbage = b"\x7fELF not a module at all".to_vec();
    for (what, bad) in
        [("damaged", damaged), ("truncated", truncated), ("foreign", foreign), ("garbage", garbage)]
    {
        std::fs::write(&entry, &bad).unwrap();
        let emulator = emulator_of(EngineOptions::default());
        assert_eq!(compile_and_run(&emulator, &source), 5, "{what}");
        let refused = statistics(&emulator);
        assert_eq!((refused.rejected, refused.hits, refused.stored), (1, 0, 1), "{what}");
        let replaced = std::fs::read(&entry).unwrap();
        assert_ne!(replaced, bad, "{what}: the entry was replaced");
        // The replacement loads.
        assert_eq!(compile_and_run(&emulator, &source), 5, "{what}");
        assert_eq!(statistics(&emulator).hits, 1, "{what}");
    }
}

/// A guest that compiles `count` different tiny modules with `module_compile` (each has a
/// custom section holding a counter), exiting with the number that failed.
fn compiling_guest(count: u32) -> String {
    format!(
        r#"(module
            (import "nebulet" "module_compile" (func $compile (param i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            ;; "\0asm", version 1, custom section (id 0, 6 bytes): name "x", a 4-byte counter.
            (data (i32.const 16) "\00asm\01\00\00\00\00\06\01x\00\00\00\00")
            (func (export "_start") (local $index i32) (local $failed i32)
              (loop $next
                (i32.store (i32.const 28) (local.get $index))
                (if (call $compile (i32.const 16) (i32.const 16) (i32.const 8))
                  (then (local.set $failed (i32.add (local.get $failed) (i32.const 1)))))
                (local.set $index (i32.add (local.get $index) (i32.const 1)))
                (br_if $next (i32.lt_u (local.get $index) (i32.const {count}))))
              (call $exit (local.get $failed))))"#
    )
}

#[test]
fn a_guest_compiling_many_modules_keeps_the_cache_within_its_bound() {
    let scratch = Scratch::new("bound");
    let directory = scratch.join("cache");
    // The size of one entry of the guest's modules, learnt from one compiled by the host.
    let probe = emulator(&scratch.join("probe"), DEFAULT_CACHE_LIMIT, EngineOptions::default());
    let mut tiny = b"\0asm\x01\0\0\0\0\x06\x01x".to_vec();
    tiny.extend_from_slice(&u32::MAX.to_le_bytes());
    probe.compile(&tiny).expect("the tiny module compiles");
    let [(_, entry_size)] = entries(&scratch.join("probe"))[..] else { panic!("one entry") };

    let limit = entry_size * 4 + entry_size / 2;
    let bounded = emulator(&directory, limit, EngineOptions::default());
    assert_eq!(compile_and_run(&bounded, &compiling_guest(20)), 0, "every compile succeeds");
    let after = statistics(&bounded);
    // The guest's 20 modules and the guest itself.
    assert_eq!(after.stored, 21, "{after:?}");
    let total: u64 = entries(&directory).iter().map(|(_, size)| size).sum();
    assert!(total <= limit, "{total} bytes of entries, bound {limit}");
    assert!(after.evicted >= 16, "{after:?}");
}

#[test]
fn the_oldest_entries_go_first() {
    let scratch = Scratch::new("oldest");
    let sources = [exiting(1), exiting(2), exiting(3)];
    // Each entry's size, from an unbounded cache.
    let sizing = emulator(&scratch.join("sizing"), DEFAULT_CACHE_LIMIT, EngineOptions::default());
    let sizes: Vec<u64> = sources
        .iter()
        .map(|source| {
            let before: u64 = entries(&scratch.join("sizing")).iter().map(|(_, size)| size).sum();
            sizing.compile(source.as_bytes()).unwrap();
            let after: u64 = entries(&scratch.join("sizing")).iter().map(|(_, size)| size).sum();
            after - before
        })
        .collect();

    let directory = scratch.join("cache");
    let limit = sizes.iter().sum::<u64>() - 1;
    let bounded = emulator(&directory, limit, EngineOptions::default());
    let now = SystemTime::now();
    let mut names = Vec::new();
    for (age, source) in [200, 100].into_iter().zip(&sources) {
        let before = entries(&directory);
        bounded.compile(source.as_bytes()).unwrap();
        let (name, _) =
            entries(&directory).into_iter().find(|entry| !before.contains(entry)).unwrap();
        let file = std::fs::File::options().write(true).open(directory.join(&name)).unwrap();
        file.set_modified(now - Duration::from_secs(age)).unwrap();
        names.push(name);
    }
    // A hit makes the oldest entry the newest.
    bounded.compile(sources[0].as_bytes()).unwrap();
    bounded.compile(sources[2].as_bytes()).unwrap();
    let left: Vec<String> = entries(&directory).into_iter().map(|(name, _)| name).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&names[0]), "the entry just used stays: {left:?}");
    assert!(!left.contains(&names[1]), "the oldest goes: {left:?}");
    assert_eq!(statistics(&bounded).evicted, 1);
}

/// Runs the command with its cache in `cache`.
fn command_in(cache: &Path, arguments: &[&str]) -> Output {
    nebulet_command().env(CACHE_DIRECTORY_VARIABLE, cache).args(arguments).output().unwrap()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn run_keeps_compiled_modules_in_the_cache_unless_told_not_to() {
    let scratch = Scratch::new("command");
    let cache = scratch.join("cache");
    let program = scratch.write("exit.wat", exiting(9));
    for off in [&["--no-cache"][..], &["-C", "cache=n"][..]] {
        let arguments: Vec<&str> =
            ["run"].iter().chain(off).copied().chain([text(&program)]).collect();
        assert_eq!(command_in(&cache, &arguments).status.code(), Some(9));
        assert!(entries(&cache).is_empty(), "{off:?} wrote {:?}", entries(&cache));
    }
    // A program given a directory that holds the cache could write machine code into it.
    let exposed = command_in(&cache, &["run", "--dir", text(&scratch.0), text(&program)]);
    assert_eq!(exposed.status.code(), Some(9));
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));

    let output = command_in(&cache, &["run", text(&program)]);
    assert_eq!(output.status.code(), Some(9), "{output:?}");
    let [(name, _)] = &entries(&cache)[..] else { panic!("one entry: {:?}", entries(&cache)) };
    let entry = cache.join(name);
    let whole = std::fs::read(&entry).unwrap();
    assert_eq!(command_in(&cache, &["run", text(&program)]).status.code(), Some(9));
    // A truncated entry is compiled again and replaced, silently.
    std::fs::write(&entry, &whole[..whole.len() / 3]).unwrap();
    let output = command_in(&cache, &["run", text(&program)]);
    assert_eq!(output.status.code(), Some(9), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    assert_eq!(std::fs::read(&entry).unwrap().len(), whole.len());
}

#[test]
fn run_refuses_a_cache_directory_others_can_write_to() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("open-cache");
    let cache = scratch.join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let program = scratch.write("exit.wat", exiting(4));
    let output = command_in(&cache, &["run", text(&program)]);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "nebulet: warning: not using {} as the module cache: others can write to it\n",
            text(&cache)
        )
    );
    assert!(entries(&cache).is_empty());
}

/// Asserts that the command failed with one line on stderr, and returns it.
fn one_line_failure(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn compile_writes_a_cwasm_that_run_loads_when_allowed() {
    let scratch = Scratch::new("compile");
    let cache = scratch.join("cache");
    let program = scratch.write("args.wat", super::cli::ARGUMENT_COUNTER);
    let compiled = scratch.join("out.cwasm");
    let output = command_in(&cache, &["compile", text(&program), "-o", text(&compiled)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(output.stdout.is_empty() && output.stderr.is_empty(), "{output:?}");

    let allowed = ["run", "--allow-precompiled", text(&compiled), "one", "-two", "--three"];
    let output = command_in(&cache, &allowed);
    assert_eq!(output.status.code(), Some(4), "the name and three arguments: {output:?}");
    // The .cwasm runs without the source or the cache.
    std::fs::remove_file(&program).unwrap();
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(command_in(&cache, &allowed).status.code(), Some(4));

    let stderr = one_line_failure(command_in(&cache, &["run", text(&compiled)]));
    assert!(stderr.contains("is precompiled: running it takes --allow-precompiled"), "{stderr}");
    let recompile = one_line_failure(command_in(&cache, &["compile", text(&compiled)]));
    assert!(recompile.ends_with("out.cwasm is compiled already\n"), "{recompile}");

    // Without -o: the module's file name with .cwasm, in the current directory.
    let program = scratch.write("named.wat", exiting(3));
    let elsewhere = scratch.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let output = nebulet_command()
        .env(CACHE_DIRECTORY_VARIABLE, &cache)
        .current_dir(&elsewhere)
        .args(["compile", text(&program)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let written = elsewhere.join("named.cwasm");
    let output = command_in(&cache, &["run", "--allow-precompiled", text(&written)]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
}

#[test]
fn a_foreign_or_damaged_cwasm_gets_a_one_line_error() {
    let scratch = Scratch::new("foreign");
    let cache = scratch.join("cache");
    // Compiled by an engine of another configuration than the command's.
    let options = EngineOptions { memory_reservation: Some(1 << 20), ..EngineOptions::default() };
    let console = Console::Buffer(Arc::new(Mutex::new(Vec::new())));
    let other = Emulator::with_options(console, options).unwrap();
    let foreign = scratch.write("foreign.cwasm", other.precompile(exiting(2).as_bytes()).unwrap());
    let stderr =
        one_line_failure(command_in(&cache, &["run", "--allow-precompiled", text(&foreign)]));
    assert_eq!(
        stderr,
        format!(
            "nebulet: cannot load {}: compiled by another version or configuration of nebulet; \
             compile it again\n",
            text(&foreign)
        )
    );

    let program = scratch.write("exit.wat", exiting(2));
    let compiled = scratch.join("exit.cwasm");
    let output = command_in(&cache, &["compile", text(&program), "--output", text(&compiled)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let whole = std::fs::read(&compiled).unwrap();
    std::fs::write(&compiled, &whole[..whole.len() - 1]).unwrap();
    let stderr =
        one_line_failure(command_in(&cache, &["run", "--allow-precompiled", text(&compiled)]));
    assert_eq!(
        stderr,
        format!(
            "nebulet: cannot load {}: truncated or damaged (its checksum does not match)\n",
            text(&compiled)
        )
    );
}

#[test]
fn a_cwasm_holds_the_module_as_the_kernel_prepares_it() {
    // Memory 0 is not exported: the kernel's preparation exports it for the system calls, and
    // a .cwasm of the module as written could not serve them.
    let scratch = Scratch::new("prepared");
    let cache = scratch.join("cache");
    let program = scratch.write(
        "hidden.wat",
        r#"(module
            (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory 1)
            (func (export "_start")
              (drop (call $sizes (i32.const 0) (i32.const 4)))
              (call $exit (i32.load (i32.const 0)))))"#,
    );
    let compiled = scratch.join("hidden.cwasm");
    let output = command_in(&cache, &["compile", text(&program), "-o", text(&compiled)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let output = command_in(&cache, &["run", "--allow-precompiled", text(&compiled), "a", "b"]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
}
