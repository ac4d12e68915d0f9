//! Module sources: a wasm binary as it is, or wat text turned into one, with one-line errors.

use std::borrow::Cow;
use std::path::Path;

/// The four bytes every wasm binary starts with.
const WASM_MAGIC: &[u8] = b"\0asm";

/// `bytes` as a wasm binary: as they are if they start with the wasm magic, parsed if they are
/// wat text. Errors are one line, and name `path` if given.
pub fn module_binary<'a>(bytes: &'a [u8], path: Option<&Path>) -> Result<Cow<'a, [u8]>, String> {
    let name = path.map(|path| path.display().to_string());
    if bytes.is_empty() {
        return Err(
            name.map_or_else(|| "the module is empty".into(), |name| format!("{name} is empty"))
        );
    }
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        let what = name.as_deref().unwrap_or("the module");
        return Err(format!("{what} is neither a wasm module nor wat text"));
    };
    // Text that cannot begin a module (`(`, or a comment before it) is no wat either: say so,
    // rather than the parser's "expected `(`".
    let start = text.trim_start();
    if !(start.starts_with('(') || start.starts_with(";;")) {
        let what = name.as_deref().unwrap_or("the module");
        return Err(format!("{what} is neither a wasm module nor wat text"));
    }
    let parsed =
        wat::Parser::new().parse_str(path, text).map_err(|error| one_line(&error.to_string()))?;
    Ok(Cow::Owned(parsed))
}

/// [`module_binary`] with no file name: what the platform's compiler is given.
pub(crate) fn to_binary(bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    module_binary(bytes, None)
}

/// An error text on one line. The text parser's form — a message, then `--> FILE:LINE:COLUMN`
/// and a drawing of the line — becomes `MESSAGE at FILE:LINE:COLUMN`; other lines are joined.
pub(crate) fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default().to_string();
    let rest: Vec<&str> = lines.collect();
    match rest.iter().find_map(|line| line.strip_prefix("--> ")) {
        Some(location) => format!("{first} at {location}"),
        None if rest.is_empty() => first,
        None => format!("{first} {}", rest.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_sorted_with_one_line_errors() {
        let path = Path::new("dir/program.wat");
        assert_eq!(module_binary(b"", Some(path)), Err("dir/program.wat is empty".into()));
        assert_eq!(
            module_binary(b"\xff\xfe\x00garbage", Some(path)),
            Err("dir/program.wat is neither a wasm module nor wat text".into())
        );
        let binary = b"\0asm\x01\0\0\0";
        assert_eq!(module_binary(binary, Some(path)), Ok(Cow::Borrowed(&binary[..])));
        assert_eq!(module_binary(b"(module)", None), Ok(Cow::Owned(binary.to_vec())));
        let error = module_binary(b"(module\n  (func oops))", Some(path)).unwrap_err();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.ends_with(" at dir/program.wat:2:9"), "{error}");
    }
}
