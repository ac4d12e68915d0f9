//! Test program for the WASI layer through plain `std`, run by the hosted integration tests as
//! `wasi-std CASE [ARGS]`. It uses nothing but std (wasi-libc underneath), so it exercises WASI
//! the way any program built for wasm32-wasip1 does. Each case prints `wasi-std CASE: ok` at its
//! end, or panics (a trap) naming what failed.
//!
//! - `files DIR`: files and directories in the preopened DIR; leaves `kept.txt` and
//!   `kept-dir/inner.txt` for the host to check.
//! - `env`: prints the arguments and `NEBULET_TEST`; exits with the number of arguments.
//! - `clock`: wall clock after 2020; the monotonic clock advances over a 10 ms sleep.
//! - `random`: prints a hash keyed by the WASI random source (it differs between runs).
//! - `stdio`: copies stdin to stdout uppercased, then writes `done` to stderr.
//! - `escape DIR`: tries to leave DIR; prints the WASI errno of each refusal.
//! - `exit N`: exits with code N.
//! - `bench DIR [COUNT]`: writes COUNT (2,000) files of 4 KiB, reads them back, lists them.
//! - `tcp COUNT`: with listening sockets at fds 3 and 4, checks that a nonblocking accept on 4
//!   (which nobody connects to) would block, then accepts COUNT connections on 3 and answers
//!   each with what it sent, uppercased, once it has read it all.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).cloned().unwrap_or_default();
    let argument = |index: usize| {
        args.get(index).cloned().unwrap_or_else(|| panic!("`{case}` needs argument {index}"))
    };
    match case.as_str() {
        "files" => files(Path::new(&argument(2))),
        "env" => env(&args),
        "clock" => clock(),
        "random" => random(),
        "stdio" => stdio(),
        "escape" => escape(Path::new(&argument(2))),
        "exit" => std::process::exit(argument(2).parse().expect("exit takes a number")),
        "bench" => bench(
            Path::new(&argument(2)),
            args.get(3).map_or(2_000, |count| count.parse().expect("a count")),
        ),
        "tcp" => tcp(argument(2).parse().expect("a count")),
        other => panic!("unknown case `{other}`"),
    }
    println!("wasi-std {case}: ok");
    if case == "env" {
        std::process::exit(args.len() as i32);
    }
}

/// Unwraps a result, naming the operation and the error if it failed.
#[track_caller]
fn check<T>(what: &str, result: io::Result<T>) -> T {
    result.unwrap_or_else(|error| panic!("{what} failed: {error} ({:?})", error.raw_os_error()))
}

/// Asserts that an operation failed with `kind`.
#[track_caller]
fn fails<T: std::fmt::Debug>(what: &str, result: io::Result<T>, kind: ErrorKind) {
    match result {
        Ok(value) => panic!("{what} succeeded ({value:?}); expected {kind:?}"),
        Err(error) => {
            assert_eq!(error.kind(), kind, "{what}: {error} ({:?})", error.raw_os_error())
        }
    }
}

/// Creates a symbolic link at `link` containing `contents`. `std::os::wasi::fs::symlink_path`
/// is unstable; `soft_link` is the stable (deprecated) name of the same call, `path_symlink`.
fn symlink(contents: &str, link: impl AsRef<Path>) -> io::Result<()> {
    #[expect(deprecated, reason = "std::os::wasi::fs::symlink_path is unstable")]
    fs::soft_link(contents, link)
}

fn read(path: &Path) -> String {
    check(&format!("reading {}", path.display()), fs::read_to_string(path))
}

fn files(root: &Path) {
    assert!(check("metadata of the preopen", fs::metadata(root)).is_dir());
    let at = |name: &str| root.join(name);

    // Create, write, read back.
    let notes = at("notes.txt");
    {
        let mut file = check("File::create", File::create(&notes));
        check("write_all", file.write_all(b"hello world\n"));
    }
    assert_eq!(read(&notes), "hello world\n");

    // Seek in a file open for reading and writing.
    {
        let mut file =
            check("open read+write", OpenOptions::new().read(true).write(true).open(&notes));
        assert_eq!(check("seek start", file.seek(SeekFrom::Start(6))), 6);
        check("write at 6", file.write_all(b"WORLD"));
        assert_eq!(check("stream_position", file.stream_position()), 11);
        assert_eq!(check("seek end", file.seek(SeekFrom::End(-6))), 6);
        let mut word = [0; 5];
        check("read_exact", file.read_exact(&mut word));
        assert_eq!(&word, b"WORLD");
        assert_eq!(check("seek current", file.seek(SeekFrom::Current(-11))), 0);
        let mut all = String::new();
        check("read_to_string", file.read_to_string(&mut all));
        assert_eq!(all, "hello WORLD\n");
        fails("seek before the start", file.seek(SeekFrom::Current(-100)), ErrorKind::InvalidInput);
    }

    // Append: writes go to the end whatever the position.
    {
        let mut file = check("open append", OpenOptions::new().append(true).open(&notes));
        check("append", file.write_all(b"more\n"));
        check("append again", file.write_all(b"again\n"));
    }
    assert_eq!(read(&notes), "hello WORLD\nmore\nagain\n");

    // Truncate and extend.
    {
        let file = check("open write", OpenOptions::new().write(true).open(&notes));
        check("set_len 5", file.set_len(5));
        assert_eq!(check("metadata", file.metadata()).len(), 5);
        check("set_len 8", file.set_len(8));
    }
    assert_eq!(check("read", fs::read(&notes)), b"hello\0\0\0");
    {
        // OpenOptions::truncate empties an existing file.
        let mut file =
            check("open truncate", OpenOptions::new().write(true).truncate(true).open(&notes));
        check("write after truncate", file.write_all(b"short"));
    }
    assert_eq!(read(&notes), "short");

    // Metadata.
    let metadata = check("fs::metadata", fs::metadata(&notes));
    assert_eq!(metadata.len(), 5);
    assert!(metadata.is_file() && !metadata.is_dir() && !metadata.file_type().is_symlink());
    let modified = check("modified", metadata.modified());
    assert!(modified > UNIX_EPOCH + Duration::from_secs(50 * 365 * 86_400), "{modified:?}");

    // Rename and remove.
    let renamed = at("renamed.txt");
    check("rename", fs::rename(&notes, &renamed));
    fails("opening the old name", File::open(&notes), ErrorKind::NotFound);
    assert_eq!(read(&renamed), "short");
    check("remove_file", fs::remove_file(&renamed));
    fails("opening a removed file", File::open(&renamed), ErrorKind::NotFound);
    fails("removing it again", fs::remove_file(&renamed), ErrorKind::NotFound);

    // Directories: nested creation, listing, removal.
    check("create_dir_all", fs::create_dir_all(at("a/b/c")));
    check("create_dir_all again", fs::create_dir_all(at("a/b/c")));
    fails("create_dir on an existing one", fs::create_dir(at("a/b")), ErrorKind::AlreadyExists);
    check("write deep", fs::write(at("a/b/c/deep.txt"), "deep"));
    check("write z", fs::write(at("a/z.txt"), "z"));
    check("write m", fs::write(at("a/m.txt"), "mm"));
    let mut listing: Vec<(String, bool)> = check("read_dir", fs::read_dir(at("a")))
        .map(|entry| {
            let entry = check("directory entry", entry);
            let kind = check("file_type", entry.file_type());
            (entry.file_name().into_string().expect("UTF-8 names"), kind.is_dir())
        })
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        [("b".to_string(), true), ("m.txt".to_string(), false), ("z.txt".to_string(), false)]
    );
    println!(
        "wasi-std files: listing {:?}",
        listing.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    let not_empty = fs::remove_dir(at("a/b"));
    assert!(not_empty.is_err(), "remove_dir of a non-empty directory succeeded");
    println!(
        "wasi-std files: remove_dir of a non-empty directory: {:?}",
        not_empty.unwrap_err().raw_os_error()
    );
    fails("remove_dir of a file", fs::remove_dir(at("a/z.txt")), ErrorKind::NotADirectory);
    fails("remove_file of a directory", fs::remove_file(at("a/b")), ErrorKind::IsADirectory);
    check("remove deep", fs::remove_file(at("a/b/c/deep.txt")));
    check("remove_dir c", fs::remove_dir(at("a/b/c")));
    assert!(!at("a/b/c").exists());
    check("create_dir_all for remove_dir_all", fs::create_dir_all(at("a/b/x/y")));
    check("write y", fs::write(at("a/b/x/y/file"), "y"));
    check("remove_dir_all", fs::remove_dir_all(at("a")));
    fails("metadata of a removed tree", fs::metadata(at("a")), ErrorKind::NotFound);

    // Symbolic links.
    let target = at("target.txt");
    check("write target", fs::write(&target, "through the link"));
    let link = at("link");
    check("symlink_path", symlink("target.txt", &link));
    assert_eq!(check("read_link", fs::read_link(&link)), PathBuf::from("target.txt"));
    let own = check("symlink_metadata", fs::symlink_metadata(&link));
    assert!(own.file_type().is_symlink(), "{own:?}");
    let followed = check("metadata through the link", fs::metadata(&link));
    assert!(followed.is_file() && followed.len() == 16, "{followed:?}");
    assert_eq!(read(&link), "through the link");
    fails("read_link of a file", fs::read_link(&target), ErrorKind::InvalidInput);
    check("remove the link", fs::remove_file(&link));
    assert!(target.exists(), "removing a link removed its target");
    check("dangling symlink", symlink("nowhere", at("dangling")));
    fails("opening a dangling link", File::open(at("dangling")), ErrorKind::NotFound);
    check("remove the dangling link", fs::remove_file(at("dangling")));

    // Hard links (the backend may not support them).
    match fs::hard_link(&target, at("hard")) {
        Ok(()) => {
            check("write through the hard link", fs::write(at("hard"), "shared contents"));
            assert_eq!(read(&target), "shared contents");
            check("remove the hard link", fs::remove_file(at("hard")));
            assert_eq!(read(&target), "shared contents");
            println!("wasi-std files: hard link ok");
        }
        Err(error) => {
            println!("wasi-std files: hard link unsupported: {error} ({:?})", error.raw_os_error())
        }
    }

    // Copy.
    assert_eq!(check("copy", fs::copy(&target, at("copy.txt"))), 15);
    assert_eq!(read(&at("copy.txt")), "shared contents");
    check("remove copy", fs::remove_file(at("copy.txt")));
    check("remove target", fs::remove_file(&target));

    // Syncing and times.
    {
        let file = check("create timed", File::create(at("timed")));
        check("sync_all", file.sync_all());
        check("sync_data", file.sync_data());
        let when = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        check("set_modified", file.set_modified(when));
        assert_eq!(check("modified", check("metadata", file.metadata()).modified()), when);
        let later = when + Duration::from_secs(60);
        check("set_times", file.set_times(fs::FileTimes::new().set_accessed(later)));
        let metadata = check("fs::metadata timed", fs::metadata(at("timed")));
        assert_eq!(check("accessed", metadata.accessed()), later);
        assert_eq!(check("modified again", metadata.modified()), when);
    }
    check("remove timed", fs::remove_file(at("timed")));

    // A large file: many reads and writes of partial buffers.
    let large: Vec<u8> = (0..(1u32 << 20) + 7).map(|index| (index * 7 % 256) as u8).collect();
    check("write large", fs::write(at("large"), &large));
    assert_eq!(check("metadata large", fs::metadata(at("large"))).len(), large.len() as u64);
    assert!(check("read large", fs::read(at("large"))) == large, "the large file differs");
    {
        let mut file = check("open large", File::open(at("large")));
        check("seek large", file.seek(SeekFrom::Start(1 << 19)));
        let mut middle = vec![0; 4096];
        check("read middle", file.read_exact(&mut middle));
        assert!(middle[..] == large[1 << 19..(1 << 19) + 4096]);
        // Reading at the end gives 0 bytes; a write to a read-only file fails.
        check("seek to the end", file.seek(SeekFrom::End(0)));
        assert_eq!(check("read at the end", file.read(&mut middle)), 0);
        assert!(file.write(b"x").is_err(), "wrote to a file opened read-only");
    }
    {
        // A write-only file cannot be read.
        let mut file = check("open write-only", OpenOptions::new().write(true).open(at("large")));
        assert!(file.read(&mut [0; 4]).is_err(), "read a file opened write-only");
    }
    check("remove large", fs::remove_file(at("large")));

    // The preopen itself, and a directory opened as a file.
    let mut top: Vec<String> = check("read_dir of the preopen", fs::read_dir(root))
        .map(|entry| check("entry", entry).file_name().into_string().unwrap())
        .collect();
    top.sort();
    println!("wasi-std files: preopen holds {top:?}");
    let opened = check("File::open of a directory", File::open(root));
    assert!(check("metadata of an opened directory", opened.metadata()).is_dir());

    // Errors.
    fails("opening a missing file", File::open(at("missing")), ErrorKind::NotFound);
    fails("a missing parent", File::create(at("no/such/dir/file")), ErrorKind::NotFound);
    check("write existing", fs::write(at("exists"), "x"));
    fails(
        "create_new on an existing file",
        OpenOptions::new().write(true).create_new(true).open(at("exists")),
        ErrorKind::AlreadyExists,
    );
    fails("opening a file as a directory", fs::read_dir(at("exists")), ErrorKind::NotADirectory);
    check("remove existing", fs::remove_file(at("exists")));

    // What the host checks afterwards.
    check("write kept", fs::write(at("kept.txt"), "written by wasi-std\n"));
    check("create kept-dir", fs::create_dir(at("kept-dir")));
    check("write inner", fs::write(at("kept-dir/inner.txt"), "inner"));
}

fn env(args: &[String]) {
    println!("wasi-std env: {} args: {args:?}", args.len());
    match std::env::var("NEBULET_TEST") {
        Ok(value) => println!("wasi-std env: NEBULET_TEST={value}"),
        Err(error) => println!("wasi-std env: NEBULET_TEST {error}"),
    }
}

fn clock() {
    let now =
        check("SystemTime", SystemTime::now().duration_since(UNIX_EPOCH).map_err(io::Error::other));
    // 2020-01-01T00:00:00Z.
    assert!(now.as_secs() > 1_577_836_800, "the wall clock says {now:?} after 1970");
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(10));
    let slept = start.elapsed();
    assert!(slept >= Duration::from_millis(10), "a 10 ms sleep took {slept:?}");
    assert!(Instant::now() >= start + slept);
    println!("wasi-std clock: slept {} us", slept.as_micros());
}

fn random() {
    // std keys its hashers with WASI's random_get (once per thread, then varies the key).
    let first = RandomState::new().hash_one("nebulet");
    let second = RandomState::new().hash_one("nebulet");
    assert_ne!(first, second, "two RandomStates hash alike");
    println!("wasi-std random: {first:016x}");
}

fn stdio() {
    let mut input = Vec::new();
    check("reading stdin", io::stdin().read_to_end(&mut input));
    let mut stdout = io::stdout().lock();
    check("writing stdout", stdout.write_all(&input.to_ascii_uppercase()));
    check("flushing stdout", stdout.flush());
    eprintln!("done");
}

/// Describes the outcome of an attempt that must fail: its errno, or `none` for an error that
/// did not come from WASI (std refuses some paths itself).
fn refused<T>(what: &str, result: io::Result<T>) -> String {
    match result {
        Ok(_) => panic!("escape: {what} succeeded: the sandbox leaks"),
        Err(error) => {
            let errno = error.raw_os_error().map_or("none".to_string(), |errno| errno.to_string());
            println!("wasi-std escape: {what}: {errno} ({error})");
            errno
        }
    }
}

fn escape(root: &Path) {
    let at = |name: &str| root.join(name);
    check("create sub", fs::create_dir_all(at("sub")));
    refused("parent", fs::read(at("../outside")));
    refused("parent via sub", fs::read(at("sub/../../outside")));
    refused("create in parent", File::create(at("../created")));
    refused("metadata of parent", fs::metadata(at("..")));
    refused("list parent", fs::read_dir(at("..")));
    refused("absolute", fs::read("/etc/passwd"));
    // Symbolic links may be made (their contents are only text), but not followed out.
    let up = symlink("..", at("up"));
    println!("wasi-std escape: symlink up: {}", if up.is_ok() { "created" } else { "refused" });
    refused("through up", fs::read(at("up/outside")));
    refused("list through up", fs::read_dir(at("up")));
    let root_link = symlink("/", at("root"));
    println!(
        "wasi-std escape: symlink root: {}",
        if root_link.is_ok() { "created" } else { "refused" }
    );
    refused("through root", fs::read(at("root/etc/passwd")));
    let file_link = symlink("../outside", at("outside-link"));
    println!(
        "wasi-std escape: symlink file: {}",
        if file_link.is_ok() { "created" } else { "refused" }
    );
    refused("through file link", fs::read(at("outside-link")));
    refused("write through file link", fs::write(at("outside-link"), "overwritten"));
    refused("rename out", fs::rename(at("sub"), at("../moved")));
}

fn bench(root: &Path, count: usize) {
    let directory = root.join("bench");
    check("create bench dir", fs::create_dir_all(&directory));
    let start = Instant::now();
    let mut block = vec![0u8; 4096];
    for index in 0..count {
        block[..8].copy_from_slice(&(index as u64).to_le_bytes());
        check("write", fs::write(directory.join(format!("{index:05}")), &block));
    }
    let written = start.elapsed();
    for index in 0..count {
        let bytes = check("read", fs::read(directory.join(format!("{index:05}"))));
        assert_eq!(bytes.len(), 4096);
        assert_eq!(bytes[..8], (index as u64).to_le_bytes());
    }
    let read = start.elapsed() - written;
    let listed = check("read_dir", fs::read_dir(&directory)).count();
    assert_eq!(listed, count);
    check("remove_dir_all", fs::remove_dir_all(&directory));
    println!(
        "wasi-std bench: {count} files: write {} ms, read {} ms, total {} ms",
        written.as_millis(),
        read.as_millis(),
        start.elapsed().as_millis()
    );
}

#[expect(unsafe_code, reason = "std takes a preopened socket's descriptor only in unsafe code")]
fn tcp(count: usize) {
    use std::net::TcpListener;
    use std::os::wasi::io::FromRawFd;
    // SAFETY: the host gives this program listening sockets at fds 3 and 4, owned by nothing
    // else in it.
    let (listener, idle) = unsafe { (TcpListener::from_raw_fd(3), TcpListener::from_raw_fd(4)) };
    check("set_nonblocking", idle.set_nonblocking(true));
    fails("a nonblocking accept with no connection", idle.accept(), ErrorKind::WouldBlock);
    for _ in 0..count {
        let (mut stream, _) = check("accept", listener.accept());
        let mut request = Vec::new();
        check("read to the end", stream.read_to_end(&mut request));
        check("write", stream.write_all(&request.to_ascii_uppercase()));
        check("shutdown", stream.shutdown(std::net::Shutdown::Write));
    }
}
