//! WASI preview 1 rights through `wasi-rights` (apps/tests/wasi-rights, raw WASI calls): one
//! run per rule set, each checked in the program (errnos, `fd_fdstat_get`) and here on the host
//! (what refused calls left undone).

use std::path::Path;

use nebulet_abi::ExitReason;

use super::{GUEST, Scratch, names, run};
use crate::System;

/// Runs `wasi-rights CASE /sandbox`, asserts it exits 0 and reports `ok`.
fn pass(case: &str, scratch: &Scratch) {
    let system = System::new();
    let status = run(&system, "wasi-rights", &[case, GUEST], scratch);
    let console = system.console();
    assert_eq!(
        (status.code, status.reason),
        (0, ExitReason::Exited),
        "wasi-rights {case} failed: {:?}\n--- console ---\n{console}",
        status.message
    );
    assert_eq!(console, format!("wasi-rights {case}: ok\n"));
}

fn contents(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn preopens_and_the_console_hold_what_wasmtime_reports() {
    let scratch = Scratch::new("rights-preopen");
    pass("preopen", &scratch);
    assert!(names(&scratch.sandbox()).is_empty(), "the refused opens made nothing");
}

#[test]
fn a_file_holds_reading_and_writing_as_opened() {
    let scratch = Scratch::new("rights-files");
    pass("files", &scratch);
    // Refused writes wrote nothing; the truncating open emptied the file.
    assert_eq!(names(&scratch.sandbox()), ["data.txt"]);
    assert_eq!(contents(&scratch.sandbox().join("data.txt")), "");
}

#[test]
fn rights_are_dropped_and_never_added_back() {
    let scratch = Scratch::new("rights-narrow");
    pass("narrow", &scratch);
    assert_eq!(contents(&scratch.sandbox().join("file")), "0123456789!");
}

#[test]
fn inheriting_rights_bound_what_is_opened_through_a_directory() {
    let scratch = Scratch::new("rights-inherit");
    pass("inherit", &scratch);
    let sub = scratch.sandbox().join("sub");
    assert_eq!(contents(&sub.join("kept.txt")), "kept", "the write through it was refused");
    assert_eq!(names(&sub), ["kept.txt", "made"], "made through sub, not through its child");
}

#[test]
fn every_directory_call_needs_its_right() {
    let scratch = Scratch::new("rights-directory");
    pass("directory", &scratch);
    // What the allowed calls did, and nothing the refused ones asked for (the refused rename
    // would have left `renamed`, the refused removals `empty` and `link`).
    assert_eq!(
        names(&scratch.sandbox()),
        ["file", "hard", "hard2", "link2", "new-dir", "new-file"]
    );
    assert_eq!(contents(&scratch.sandbox().join("hard")), "data");
}

#[test]
fn fdflags_are_kept_and_only_append_and_nonblock_change() {
    let scratch = Scratch::new("rights-flags");
    pass("flags", &scratch);
    assert_eq!(contents(&scratch.sandbox().join("synced")), "abcdef");
}
