//! Test program for WASI preview 1 rights, through raw calls: `wasi-rights CASE DIR`, where DIR
//! is the guest name of a preopened, empty directory. Each case checks one set of rules, prints
//! `wasi-rights CASE: ok` and exits 0, or panics naming the first check that failed.
//!
//! - `preopen`: what a preopen and the console hold; opening `.` with the preopen's own rights;
//!   rights that do not apply to a directory are masked.
//! - `files`: what a file holds for what it was opened for, and the errno without a right.
//! - `narrow`: `fd_fdstat_set_rights` drops rights, masks what does not apply, never adds.
//! - `inherit`: a directory's inheriting rights bound what is opened through it.
//! - `directory`: every directory call fails with `ENOTCAPABLE` without its right.
//! - `flags`: the `fdflags` a file is opened with, and which `fd_fdstat_set_flags` changes.

use nebulet_raw::{wasi, writable};

const BADF: i32 = 8;
const INVAL: i32 = 28;
const ISDIR: i32 = 31;
const NOTCAPABLE: i32 = 76;

const FD_DATASYNC: u64 = 1 << 0;
const FD_READ: u64 = 1 << 1;
const FD_SEEK: u64 = 1 << 2;
const FD_SYNC: u64 = 1 << 4;
const FD_TELL: u64 = 1 << 5;
const FD_WRITE: u64 = 1 << 6;
const FD_ALLOCATE: u64 = 1 << 8;
const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
const PATH_CREATE_FILE: u64 = 1 << 10;
const PATH_LINK_SOURCE: u64 = 1 << 11;
const PATH_LINK_TARGET: u64 = 1 << 12;
const PATH_OPEN: u64 = 1 << 13;
const FD_READDIR: u64 = 1 << 14;
const PATH_READLINK: u64 = 1 << 15;
const PATH_RENAME_SOURCE: u64 = 1 << 16;
const PATH_RENAME_TARGET: u64 = 1 << 17;
const PATH_FILESTAT_GET: u64 = 1 << 18;
const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
const FD_FILESTAT_GET: u64 = 1 << 21;
const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
const PATH_SYMLINK: u64 = 1 << 24;
const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
const PATH_UNLINK_FILE: u64 = 1 << 26;

/// The rights that open a file for writing (and a directory never).
const WRITING: u64 = FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE;

/// The rights wasmtime reports for a preopened directory.
const PREOPEN_BASE: u64 = 0x7b7_fe00;
const PREOPEN_INHERITING: u64 = 0xff7_ffff;

const OFLAGS_CREAT: u32 = 1;
const OFLAGS_DIRECTORY: u32 = 2;
const OFLAGS_TRUNC: u32 = 8;
const APPEND: u16 = 1;
const NONBLOCK: u16 = 4;
const SYNC: u16 = 16;
const WHENCE_SET: u32 = 0;
const WHENCE_CUR: u32 = 1;
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (case, name) = match args.as_slice() {
        [_, case, name] => (case.as_str(), name.as_str()),
        _ => panic!("usage: wasi-rights CASE DIR"),
    };
    let preopen = find_preopen(name);
    match case {
        "preopen" => preopen_and_console(preopen),
        "files" => files(preopen),
        "narrow" => narrow(preopen),
        "inherit" => inherit(preopen),
        "directory" => directory_calls(preopen),
        "flags" => flags(preopen),
        other => panic!("unknown case `{other}`"),
    }
    println!("wasi-rights {case}: ok");
}

/// `fd_fdstat_get`: file type, flags, base and inheriting rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fdstat {
    file_type: u8,
    flags: u16,
    base: u64,
    inheriting: u64,
}

fn fdstat(fd: u32) -> Fdstat {
    let mut record = [0u8; 24];
    assert_eq!(wasi::fd_fdstat_get(fd, writable(&mut record)), 0, "fd_fdstat_get({fd})");
    let word = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap());
    Fdstat {
        file_type: record[0],
        flags: u16::from_le_bytes([record[2], record[3]]),
        base: word(8),
        inheriting: word(16),
    }
}

fn address(bytes: &[u8]) -> u32 {
    bytes.as_ptr() as usize as u32
}

/// `path_open`: the new descriptor or the errno.
fn open(
    dir: u32,
    path: &str,
    oflags: u32,
    base: u64,
    inheriting: u64,
    fdflags: u16,
) -> Result<u32, i32> {
    let mut fd = 0u32;
    let (pointer, length) = (address(path.as_bytes()), path.len() as u32);
    let errno = wasi::path_open(
        dir,
        0,
        pointer,
        length,
        oflags,
        base as i64,
        inheriting as i64,
        u32::from(fdflags),
        writable(&mut fd),
    );
    if errno == 0 { Ok(fd) } else { Err(errno) }
}

/// `path_open` that must succeed.
fn opened(dir: u32, path: &str, oflags: u32, base: u64, inheriting: u64) -> u32 {
    open(dir, path, oflags, base, inheriting, 0)
        .unwrap_or_else(|errno| panic!("path_open({path}) failed with {errno}"))
}

/// A path call with one path argument.
fn with_path(path: &str, call: impl FnOnce(u32, u32) -> i32) -> i32 {
    call(address(path.as_bytes()), path.len() as u32)
}

fn read(fd: u32) -> Result<Vec<u8>, i32> {
    let mut buffer = vec![0u8; 64];
    let iovec = [address(&buffer), buffer.len() as u32];
    let mut count = 0u32;
    let errno = wasi::fd_read(fd, address_of(&iovec), 1, writable(&mut count));
    buffer.truncate(count as usize);
    if errno == 0 { Ok(buffer) } else { Err(errno) }
}

fn write(fd: u32, bytes: &[u8]) -> i32 {
    let iovec = [address(bytes), bytes.len() as u32];
    let mut count = 0u32;
    wasi::fd_write(fd, address_of(&iovec), 1, writable(&mut count))
}

fn address_of(words: &[u32; 2]) -> u32 {
    words.as_ptr() as usize as u32
}

fn seek(fd: u32, offset: i64, whence: u32) -> i32 {
    let mut position = 0u64;
    wasi::fd_seek(fd, offset, whence, writable(&mut position))
}

fn tell(fd: u32) -> i32 {
    let mut position = 0u64;
    wasi::fd_tell(fd, writable(&mut position))
}

fn expect(what: &str, errno: i32, expected: i32) {
    assert_eq!(errno, expected, "{what}: errno {errno}, expected {expected}");
}

/// The first preopen from 3 on whose name is `name`.
fn find_preopen(name: &str) -> u32 {
    for fd in 3..64 {
        let mut prestat = [0u32; 2];
        if wasi::fd_prestat_get(fd, writable(&mut prestat)) != 0 {
            break;
        }
        let mut found = vec![0u8; prestat[1] as usize];
        let errno = wasi::fd_prestat_dir_name(fd, writable(found.as_mut_slice()), prestat[1]);
        if errno == 0 && found == name.as_bytes() {
            return fd;
        }
    }
    panic!("no preopen named {name}");
}

fn preopen_and_console(preopen: u32) {
    let stat = fdstat(preopen);
    assert_eq!(stat.file_type, FILETYPE_DIRECTORY);
    assert_eq!((stat.base, stat.inheriting), (PREOPEN_BASE, PREOPEN_INHERITING), "{stat:x?}");
    for fd in 0..3 {
        let console = fdstat(fd);
        assert_eq!(console.file_type, FILETYPE_CHARACTER_DEVICE);
        // No seek or tell: wasi-libc's isatty() takes this for a terminal.
        assert_eq!(console.base & (FD_SEEK | FD_TELL), 0, "console {fd}: {console:x?}");
        assert_eq!(console.base & (FD_READ | FD_WRITE), FD_READ | FD_WRITE);
        assert_eq!(console.base & (PATH_OPEN | FD_READDIR), 0, "no directory rights");
        assert_eq!(console.inheriting, 0);
    }
    // The official suite's helper: open "." with the rights fd_fdstat_get reported.
    let dot = opened(preopen, ".", OFLAGS_DIRECTORY, stat.base, stat.inheriting);
    let child = fdstat(dot);
    assert_eq!(
        (child.file_type, child.base, child.inheriting),
        (FILETYPE_DIRECTORY, stat.base, stat.inheriting)
    );
    // And without `oflags.directory`, with every right but writing: still a directory.
    let every = opened(preopen, ".", 0, !WRITING, u64::MAX);
    assert_eq!(fdstat(every), child);
    // Reading and writing bytes do not apply to a directory: asking for them is masked, but a
    // directory is never opened for writing.
    let masked = opened(preopen, ".", OFLAGS_DIRECTORY, FD_READ | FD_SEEK | PATH_OPEN, 0);
    assert_eq!(fdstat(masked).base & (FD_READ | FD_SEEK), 0, "masked off");
    expect("seek on a directory", seek(masked, 0, WHENCE_SET), BADF);
    expect("tell on a directory", tell(masked), BADF);
    let both = open(preopen, ".", OFLAGS_DIRECTORY, FD_READ | FD_WRITE, 0, 0);
    expect("a directory opened for writing", both.err().unwrap_or(0), ISDIR);
}

fn files(preopen: u32) {
    let data = opened(preopen, "data.txt", OFLAGS_CREAT, FD_READ | FD_WRITE, 0);
    expect("write", write(data, b"hello"), 0);
    let read_only =
        opened(preopen, "data.txt", 0, FD_READ | PATH_FILESTAT_GET | PATH_OPEN, u64::MAX);
    let stat = fdstat(read_only);
    assert_eq!(stat.base & FD_READ, FD_READ, "{stat:x?}");
    assert_eq!(stat.base & (FD_WRITE | FD_ALLOCATE | FD_FILESTAT_SET_SIZE), 0, "not for writing");
    assert_eq!(stat.base & (PATH_FILESTAT_GET | PATH_OPEN), 0, "a file holds no path rights");
    assert_eq!(
        stat.base & (FD_SEEK | FD_TELL | FD_FILESTAT_GET),
        FD_SEEK | FD_TELL | FD_FILESTAT_GET
    );
    assert_eq!(stat.inheriting, 0, "a file passes nothing on");
    assert_eq!(read(read_only), Ok(b"hello".to_vec()));
    expect("write to a read-only file", write(read_only, b"x"), BADF);
    expect("resize a read-only file", wasi::fd_filestat_set_size(read_only, 0), NOTCAPABLE);
    expect("allocate in a read-only file", wasi::fd_allocate(read_only, 0, 100), NOTCAPABLE);
    let write_only = opened(preopen, "data.txt", 0, FD_WRITE, 0);
    expect("read from a write-only file", read(write_only).err().unwrap_or(0), BADF);
    assert_eq!(fdstat(write_only).base & (FD_READ | FD_WRITE), FD_WRITE);
    // Resizing alone opens for writing, but does not give fd_write.
    let resize = opened(preopen, "data.txt", 0, FD_FILESTAT_SET_SIZE, 0);
    expect("write with only the resize right", write(resize, b"x"), BADF);
    expect("resize", wasi::fd_filestat_set_size(resize, 4), 0);
    assert_eq!(read(read_only), Ok(Vec::new()), "at offset 5 of 4 bytes");
    // Truncating at open needs no right of the file; it gives none either.
    let truncated = opened(preopen, "data.txt", OFLAGS_TRUNC, 0, 0);
    assert_eq!(fdstat(truncated).base & (FD_READ | FD_WRITE), 0);
    expect("write through a truncating open", write(truncated, b"x"), BADF);
    expect("close", wasi::fd_close(truncated), 0);
    let mut size = [0u8; 64];
    expect("filestat", wasi::fd_filestat_get(read_only, writable(&mut size)), 0);
    assert_eq!(u64::from_le_bytes(size[32..40].try_into().unwrap()), 0, "truncated");
}

fn narrow(preopen: u32) {
    let file = opened(preopen, "file", OFLAGS_CREAT, FD_READ | FD_WRITE, 0);
    expect("write", write(file, b"0123456789"), 0);
    let full = fdstat(file).base;
    // Drop reading: fd_read fails as on a descriptor not open for it.
    expect("drop fd_read", wasi::fd_fdstat_set_rights(file, (full & !FD_READ) as i64, 0), 0);
    expect("read without fd_read", read(file).err().unwrap_or(0), BADF);
    expect("write still", write(file, b"!"), 0);
    // Drop seeking: moving fails; asking where it is needs only fd_tell.
    let rights = full & !(FD_READ | FD_SEEK);
    expect("drop fd_seek", wasi::fd_fdstat_set_rights(file, rights as i64, 0), 0);
    expect("seek without fd_seek", seek(file, 2, WHENCE_SET), NOTCAPABLE);
    expect("tell with fd_tell", tell(file), 0);
    expect("seek(0, CUR) with fd_tell", seek(file, 0, WHENCE_CUR), 0);
    let rights = rights & !FD_TELL;
    expect("drop fd_tell", wasi::fd_fdstat_set_rights(file, rights as i64, 0), 0);
    expect("tell without fd_tell", tell(file), NOTCAPABLE);
    // Never back; nor anything it never held.
    expect(
        "add fd_read back",
        wasi::fd_fdstat_set_rights(file, (rights | FD_READ) as i64, 0),
        NOTCAPABLE,
    );
    assert_eq!(fdstat(file).base, rights, "a refused call changes nothing");
    // Rights that do not apply to a file are masked, not refused.
    let masked = wasi::fd_fdstat_set_rights(file, (rights | PATH_OPEN) as i64, FD_READ as i64);
    expect("rights that do not apply", masked, 0);
    assert_eq!((fdstat(file).base, fdstat(file).inheriting), (rights, 0));
    expect("drop fd_sync", wasi::fd_fdstat_set_rights(file, (rights & !FD_SYNC) as i64, 0), 0);
    expect("sync without fd_sync", wasi::fd_sync(file), NOTCAPABLE);
    expect("datasync with fd_datasync", wasi::fd_datasync(file), 0);
    let rights = rights & !(FD_SYNC | FD_DATASYNC);
    expect("drop fd_datasync", wasi::fd_fdstat_set_rights(file, rights as i64, 0), 0);
    expect("datasync without fd_datasync", wasi::fd_datasync(file), NOTCAPABLE);
    // The console too.
    let stdin = fdstat(0).base;
    expect(
        "add fd_seek to stdin",
        wasi::fd_fdstat_set_rights(0, (stdin | FD_SEEK) as i64, 0),
        NOTCAPABLE,
    );
    expect(
        "drop fd_read from stdin",
        wasi::fd_fdstat_set_rights(0, (stdin & !FD_READ) as i64, 0),
        0,
    );
    expect("read stdin without fd_read", read(0).err().unwrap_or(0), BADF);
    // A directory: base and inheriting shrink separately.
    let dir = opened(preopen, ".", OFLAGS_DIRECTORY, 0, 0);
    let narrowed = PREOPEN_BASE & !PATH_SYMLINK;
    let set = wasi::fd_fdstat_set_rights(
        dir,
        (narrowed | FD_SEEK) as i64,
        (PREOPEN_INHERITING & !FD_WRITE) as i64,
    );
    expect("narrow a directory", set, 0);
    assert_eq!(
        (fdstat(dir).base, fdstat(dir).inheriting),
        (narrowed, PREOPEN_INHERITING & !FD_WRITE)
    );
    let widen = wasi::fd_fdstat_set_rights(dir, narrowed as i64, PREOPEN_INHERITING as i64);
    expect("widen inheriting", widen, NOTCAPABLE);
}

fn inherit(preopen: u32) {
    expect(
        "mkdir",
        with_path("sub", |path, length| wasi::path_create_directory(preopen, path, length)),
        0,
    );
    let file = opened(preopen, "sub/kept.txt", OFLAGS_CREAT, FD_WRITE, 0);
    expect("write", write(file, b"kept"), 0);
    let sub = opened(preopen, "sub", OFLAGS_DIRECTORY, 0, 0);
    // A directory opened through another holds what that one passes on, whatever it asked for.
    assert_eq!((fdstat(sub).base, fdstat(sub).inheriting), (PREOPEN_BASE, PREOPEN_INHERITING));
    // Stop passing on fd_write and path_create_directory.
    let inheriting = PREOPEN_INHERITING & !(FD_WRITE | PATH_CREATE_DIRECTORY);
    expect("narrow", wasi::fd_fdstat_set_rights(sub, PREOPEN_BASE as i64, inheriting as i64), 0);
    // A file opened for writing through it cannot write (asking is masked, not refused).
    let masked = opened(sub, "kept.txt", 0, FD_READ | FD_WRITE, u64::MAX);
    assert_eq!(fdstat(masked).base & (FD_READ | FD_WRITE), FD_READ);
    expect("write through the narrowed directory", write(masked, b"lost"), BADF);
    assert_eq!(read(masked), Ok(b"kept".to_vec()));
    // A directory opened through it holds and passes on no more than it passes on.
    let child = opened(sub, ".", OFLAGS_DIRECTORY, !WRITING, u64::MAX);
    assert_eq!(fdstat(child).base, PREOPEN_BASE & !PATH_CREATE_DIRECTORY);
    assert_eq!(fdstat(child).inheriting, inheriting);
    let mkdir =
        |dir: u32| with_path("made", |path, length| wasi::path_create_directory(dir, path, length));
    expect("mkdir through the child", mkdir(child), NOTCAPABLE);
    expect("mkdir through sub (its base still has it)", mkdir(sub), 0);
    // Without path_create_file in its base, sub opens what exists but creates nothing.
    let base = PREOPEN_BASE & !PATH_CREATE_FILE;
    expect("narrow base", wasi::fd_fdstat_set_rights(sub, base as i64, inheriting as i64), 0);
    expect(
        "create without the right",
        open(sub, "new.txt", OFLAGS_CREAT, FD_WRITE, 0, 0).err().unwrap_or(0),
        NOTCAPABLE,
    );
    expect(
        "create an existing file without the right",
        open(sub, "kept.txt", OFLAGS_CREAT, 0, 0, 0).err().unwrap_or(0),
        NOTCAPABLE,
    );
    opened(sub, "kept.txt", 0, FD_READ, 0);
}

/// A directory descriptor on the preopen holding every directory right but `dropped`.
fn without(preopen: u32, dropped: u64) -> u32 {
    let dir = opened(preopen, ".", OFLAGS_DIRECTORY, 0, 0);
    let base = PREOPEN_BASE & !dropped;
    expect("narrow", wasi::fd_fdstat_set_rights(dir, base as i64, PREOPEN_INHERITING as i64), 0);
    dir
}

/// A directory call: the right it needs, the rights it needs in all, its name, and the call.
type DirectoryCall<'a> = (u64, u64, &'a str, &'a dyn Fn(u32) -> i32);

fn directory_calls(preopen: u32) {
    let file = opened(preopen, "file", OFLAGS_CREAT, FD_WRITE, 0);
    expect("write", write(file, b"data"), 0);
    let symlink = two_paths("file", "link", |a, b| wasi::path_symlink(a.0, a.1, preopen, b.0, b.1));
    expect("symlink", symlink, 0);
    let mkdir =
        with_path("empty", |path, length| wasi::path_create_directory(preopen, path, length));
    expect("mkdir", mkdir, 0);
    // In order: each allowed call does its work, which a later one may build on.
    let calls: [DirectoryCall<'_>; 17] = [
        (PATH_CREATE_DIRECTORY, 0, "path_create_directory", &|dir| {
            with_path("new-dir", |path, length| wasi::path_create_directory(dir, path, length))
        }),
        (PATH_OPEN, 0, "path_open", &|dir| open(dir, "file", 0, FD_READ, 0, 0).err().unwrap_or(0)),
        (PATH_OPEN, 0, "path_open(directory)", &|dir| {
            open(dir, "empty", OFLAGS_DIRECTORY, 0, 0, 0).err().unwrap_or(0)
        }),
        (PATH_CREATE_FILE, PATH_OPEN, "path_open(creat)", &|dir| {
            open(dir, "new-file", OFLAGS_CREAT, FD_WRITE, 0, 0).err().unwrap_or(0)
        }),
        (PATH_LINK_SOURCE, 0, "path_link(source)", &|dir| {
            two_paths("file", "hard", |a, b| wasi::path_link(dir, 0, a.0, a.1, preopen, b.0, b.1))
        }),
        (PATH_LINK_TARGET, 0, "path_link(target)", &|dir| {
            two_paths("file", "hard2", |a, b| wasi::path_link(preopen, 0, a.0, a.1, dir, b.0, b.1))
        }),
        (FD_READDIR, 0, "fd_readdir", &|dir| {
            let (mut entries, mut used) = ([0u8; 256], 0u32);
            wasi::fd_readdir(dir, writable(&mut entries), 256, 0, writable(&mut used))
        }),
        (PATH_READLINK, 0, "path_readlink", &|dir| {
            let (mut contents, mut used) = ([0u8; 16], 0u32);
            let (buffer, used) = (writable(&mut contents), writable(&mut used));
            with_path("link", |path, length| {
                wasi::path_readlink(dir, path, length, buffer, 16, used)
            })
        }),
        (PATH_RENAME_SOURCE, 0, "path_rename(source)", &|dir| {
            two_paths("file", "renamed", |a, b| wasi::path_rename(dir, a.0, a.1, preopen, b.0, b.1))
        }),
        (PATH_RENAME_TARGET, 0, "path_rename(target)", &|dir| {
            two_paths("renamed", "file", |a, b| wasi::path_rename(preopen, a.0, a.1, dir, b.0, b.1))
        }),
        (PATH_FILESTAT_GET, 0, "path_filestat_get", &|dir| {
            let mut stat = [0u8; 64];
            let out = writable(&mut stat);
            with_path("file", |path, length| wasi::path_filestat_get(dir, 0, path, length, out))
        }),
        (PATH_FILESTAT_SET_TIMES, 0, "path_filestat_set_times", &|dir| {
            // fstflags.atim_now
            with_path("file", |path, length| {
                wasi::path_filestat_set_times(dir, 0, path, length, 0, 0, 2)
            })
        }),
        (FD_FILESTAT_GET, 0, "fd_filestat_get", &|dir| {
            let mut stat = [0u8; 64];
            wasi::fd_filestat_get(dir, writable(&mut stat))
        }),
        (FD_FILESTAT_SET_TIMES, 0, "fd_filestat_set_times", &|dir| {
            wasi::fd_filestat_set_times(dir, 0, 0, 2)
        }),
        (PATH_SYMLINK, 0, "path_symlink", &|dir| {
            two_paths("file", "link2", |a, b| wasi::path_symlink(a.0, a.1, dir, b.0, b.1))
        }),
        (PATH_REMOVE_DIRECTORY, 0, "path_remove_directory", &|dir| {
            with_path("empty", |path, length| wasi::path_remove_directory(dir, path, length))
        }),
        (PATH_UNLINK_FILE, 0, "path_unlink_file", &|dir| {
            with_path("link", |path, length| wasi::path_unlink_file(dir, path, length))
        }),
    ];
    for (right, also, name, call) in calls {
        expect(&format!("{name} without its right"), call(without(preopen, right)), NOTCAPABLE);
        let only = without(preopen, PREOPEN_BASE & !(right | also));
        expect(&format!("{name} with only the rights it needs"), call(only), 0);
    }
}

/// A path call with two path arguments.
fn two_paths(first: &str, second: &str, call: impl FnOnce((u32, u32), (u32, u32)) -> i32) -> i32 {
    call(
        (address(first.as_bytes()), first.len() as u32),
        (address(second.as_bytes()), second.len() as u32),
    )
}

fn flags(preopen: u32) {
    let file = open(preopen, "synced", OFLAGS_CREAT, FD_READ | FD_WRITE, 0, APPEND | SYNC)
        .expect("open with sync");
    assert_eq!(fdstat(file).flags, APPEND | SYNC);
    expect("write", write(file, b"abc"), 0);
    expect("seek", seek(file, 0, WHENCE_SET), 0);
    expect("append", write(file, b"def"), 0);
    // Sync flags are chosen at open: setting one is EINVAL; clearing append keeps them.
    expect("set sync", wasi::fd_fdstat_set_flags(file, u32::from(SYNC)), INVAL);
    expect("set nothing", wasi::fd_fdstat_set_flags(file, 0), 0);
    assert_eq!(fdstat(file).flags, SYNC);
    expect("set nonblock", wasi::fd_fdstat_set_flags(file, u32::from(NONBLOCK)), 0);
    assert_eq!(fdstat(file).flags, SYNC | NONBLOCK);
    expect("unknown flags", wasi::fd_fdstat_set_flags(file, 32), INVAL);
    // A directory has no flags to set; opening one with nonblock is fine and keeps none.
    let dir = open(preopen, ".", 0, 0, 0, NONBLOCK).expect("open . with nonblock");
    assert_eq!(fdstat(dir).flags, 0);
    expect("set flags of a directory", wasi::fd_fdstat_set_flags(dir, 0), BADF);
    // Without the right, flags stay.
    let rights = fdstat(file).base & !(1 << 3);
    expect("drop fd_fdstat_set_flags", wasi::fd_fdstat_set_rights(file, rights as i64, 0), 0);
    expect("set flags without the right", wasi::fd_fdstat_set_flags(file, 0), NOTCAPABLE);
    let mut stat = [0u8; 64];
    expect("filestat", wasi::fd_filestat_get(file, writable(&mut stat)), 0);
    assert_eq!(u64::from_le_bytes(stat[32..40].try_into().unwrap()), 6, "appended at the end");
}
