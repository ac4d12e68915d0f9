//! The WASI preview 1 imports (`wasi_snapshot_preview1`) with plain integer parameters, for the
//! fuzzer: every function but `proc_exit`, each returning its errno (0 on success).
#![allow(unsafe_code, reason = "the raw imports; every call passes integers the kernel must check")]
#![expect(clippy::too_many_arguments, reason = "`path_open` has WASI's nine arguments")]

mod imports {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn args_get(pointers: u32, buffer: u32) -> i32;
        pub fn args_sizes_get(count: u32, size: u32) -> i32;
        pub fn environ_get(pointers: u32, buffer: u32) -> i32;
        pub fn environ_sizes_get(count: u32, size: u32) -> i32;
        pub fn clock_res_get(clock: u32, out: u32) -> i32;
        pub fn clock_time_get(clock: u32, precision: i64, out: u32) -> i32;
        pub fn fd_advise(fd: u32, offset: i64, length: i64, advice: u32) -> i32;
        pub fn fd_allocate(fd: u32, offset: i64, length: i64) -> i32;
        pub fn fd_close(fd: u32) -> i32;
        pub fn fd_datasync(fd: u32) -> i32;
        pub fn fd_fdstat_get(fd: u32, out: u32) -> i32;
        pub fn fd_fdstat_set_flags(fd: u32, flags: u32) -> i32;
        pub fn fd_fdstat_set_rights(fd: u32, base: i64, inheriting: i64) -> i32;
        pub fn fd_filestat_get(fd: u32, out: u32) -> i32;
        pub fn fd_filestat_set_size(fd: u32, size: i64) -> i32;
        pub fn fd_filestat_set_times(fd: u32, accessed: i64, modified: i64, flags: u32) -> i32;
        pub fn fd_pread(fd: u32, iovs: u32, count: u32, offset: i64, out: u32) -> i32;
        pub fn fd_prestat_get(fd: u32, out: u32) -> i32;
        pub fn fd_prestat_dir_name(fd: u32, buffer: u32, length: u32) -> i32;
        pub fn fd_pwrite(fd: u32, iovs: u32, count: u32, offset: i64, out: u32) -> i32;
        pub fn fd_read(fd: u32, iovs: u32, count: u32, out: u32) -> i32;
        pub fn fd_readdir(fd: u32, buffer: u32, length: u32, cookie: i64, out: u32) -> i32;
        pub fn fd_renumber(from: u32, to: u32) -> i32;
        pub fn fd_seek(fd: u32, offset: i64, whence: u32, out: u32) -> i32;
        pub fn fd_sync(fd: u32) -> i32;
        pub fn fd_tell(fd: u32, out: u32) -> i32;
        pub fn fd_write(fd: u32, iovs: u32, count: u32, out: u32) -> i32;
        pub fn path_create_directory(fd: u32, path: u32, length: u32) -> i32;
        pub fn path_filestat_get(fd: u32, flags: u32, path: u32, length: u32, out: u32) -> i32;
        pub fn path_filestat_set_times(
            fd: u32,
            flags: u32,
            path: u32,
            length: u32,
            accessed: i64,
            modified: i64,
            time_flags: u32,
        ) -> i32;
        pub fn path_link(
            old_fd: u32,
            old_flags: u32,
            old_path: u32,
            old_length: u32,
            new_fd: u32,
            new_path: u32,
            new_length: u32,
        ) -> i32;
        pub fn path_open(
            fd: u32,
            dirflags: u32,
            path: u32,
            length: u32,
            oflags: u32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: u32,
            out: u32,
        ) -> i32;
        pub fn path_readlink(
            fd: u32,
            path: u32,
            length: u32,
            buffer: u32,
            capacity: u32,
            out: u32,
        ) -> i32;
        pub fn path_remove_directory(fd: u32, path: u32, length: u32) -> i32;
        pub fn path_rename(
            fd: u32,
            old_path: u32,
            old_length: u32,
            new_fd: u32,
            new_path: u32,
            new_length: u32,
        ) -> i32;
        pub fn path_symlink(
            contents: u32,
            contents_length: u32,
            fd: u32,
            path: u32,
            length: u32,
        ) -> i32;
        pub fn path_unlink_file(fd: u32, path: u32, length: u32) -> i32;
        pub fn poll_oneoff(subscriptions: u32, events: u32, count: u32, out: u32) -> i32;
        pub fn proc_raise(signal: u32) -> i32;
        pub fn sched_yield() -> i32;
        pub fn random_get(buffer: u32, length: u32) -> i32;
        pub fn sock_accept(fd: u32, flags: u32, out: u32) -> i32;
        pub fn sock_recv(
            fd: u32,
            data: u32,
            count: u32,
            flags: u32,
            out_length: u32,
            out_flags: u32,
        ) -> i32;
        pub fn sock_send(fd: u32, data: u32, count: u32, flags: u32, out_length: u32) -> i32;
        pub fn sock_shutdown(fd: u32, how: u32) -> i32;
    }
}

/// Safe wrappers, on the same terms as the `nebulet` ones (see the crate's root): the kernel
/// checks every argument, and callers point writable arguments only at memory nothing else uses
/// or outside memory.
macro_rules! wrap {
    ($($name:ident($($argument:ident: $type:ty),*);)*) => {$(
        pub fn $name($($argument: $type),*) -> i32 {
            // SAFETY: see above: the kernel checks every argument against this memory.
            unsafe { imports::$name($($argument),*) }
        }
    )*};
}

wrap! {
    args_get(pointers: u32, buffer: u32);
    args_sizes_get(count: u32, size: u32);
    environ_get(pointers: u32, buffer: u32);
    environ_sizes_get(count: u32, size: u32);
    clock_res_get(clock: u32, out: u32);
    clock_time_get(clock: u32, precision: i64, out: u32);
    fd_advise(fd: u32, offset: i64, length: i64, advice: u32);
    fd_allocate(fd: u32, offset: i64, length: i64);
    fd_close(fd: u32);
    fd_datasync(fd: u32);
    fd_fdstat_get(fd: u32, out: u32);
    fd_fdstat_set_flags(fd: u32, flags: u32);
    fd_fdstat_set_rights(fd: u32, base: i64, inheriting: i64);
    fd_filestat_get(fd: u32, out: u32);
    fd_filestat_set_size(fd: u32, size: i64);
    fd_filestat_set_times(fd: u32, accessed: i64, modified: i64, flags: u32);
    fd_pread(fd: u32, iovs: u32, count: u32, offset: i64, out: u32);
    fd_prestat_get(fd: u32, out: u32);
    fd_prestat_dir_name(fd: u32, buffer: u32, length: u32);
    fd_pwrite(fd: u32, iovs: u32, count: u32, offset: i64, out: u32);
    fd_read(fd: u32, iovs: u32, count: u32, out: u32);
    fd_readdir(fd: u32, buffer: u32, length: u32, cookie: i64, out: u32);
    fd_renumber(from: u32, to: u32);
    fd_seek(fd: u32, offset: i64, whence: u32, out: u32);
    fd_sync(fd: u32);
    fd_tell(fd: u32, out: u32);
    fd_write(fd: u32, iovs: u32, count: u32, out: u32);
    path_create_directory(fd: u32, path: u32, length: u32);
    path_filestat_get(fd: u32, flags: u32, path: u32, length: u32, out: u32);
    path_filestat_set_times(fd: u32, flags: u32, path: u32, length: u32, accessed: i64, modified: i64, time_flags: u32);
    path_link(old_fd: u32, old_flags: u32, old_path: u32, old_length: u32, new_fd: u32, new_path: u32, new_length: u32);
    path_open(fd: u32, dirflags: u32, path: u32, length: u32, oflags: u32, rights_base: i64, rights_inheriting: i64, fdflags: u32, out: u32);
    path_readlink(fd: u32, path: u32, length: u32, buffer: u32, capacity: u32, out: u32);
    path_remove_directory(fd: u32, path: u32, length: u32);
    path_rename(fd: u32, old_path: u32, old_length: u32, new_fd: u32, new_path: u32, new_length: u32);
    path_symlink(contents: u32, contents_length: u32, fd: u32, path: u32, length: u32);
    path_unlink_file(fd: u32, path: u32, length: u32);
    poll_oneoff(subscriptions: u32, events: u32, count: u32, out: u32);
    proc_raise(signal: u32);
    sched_yield();
    random_get(buffer: u32, length: u32);
    sock_accept(fd: u32, flags: u32, out: u32);
    sock_recv(fd: u32, data: u32, count: u32, flags: u32, out_length: u32, out_flags: u32);
    sock_send(fd: u32, data: u32, count: u32, flags: u32, out_length: u32);
    sock_shutdown(fd: u32, how: u32);
}

/// The largest errno of WASI preview 1 (`ENOTCAPABLE`): every function returns 0 or an errno
/// up to it.
pub const ERRNO_MAX: i32 = 76;
