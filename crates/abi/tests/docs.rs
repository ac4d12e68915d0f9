//! Checks `docs/abi.md`, the system-call specification, against this crate.
//!
//! The document is prose for people, but its headings, signature lines and tables have a fixed
//! shape, so this test can parse them and compare every name and number with the crate: the call
//! sections against `calls::CALLS` (signatures, arguments, and error lists: the crate is their
//! source, and each call's `Errors:` bullets must name its `errors` in the same order), every
//! `ERR_*` name against `Error::ALL`, the tables of status codes, rights, signals, object types,
//! process states, exit reasons, info topics, layouts, limits, resource limits, constants and
//! default rights against the crate's definitions.
//!
//! Each test collects every difference it finds and fails with all of them, naming the line of
//! the document where it can.

use nebulet_abi::bootstrap::{APP_PREFIX, MANIFEST_PREFIX};
use nebulet_abi::calls::{CALLS, Call, Returns, ValueType};
use nebulet_abi::layout::{InfoBasic, InfoBudget, InfoProcess, WaitItem};
use nebulet_abi::{
    BUFFER_MAX_BYTES, CHANNEL_MAX_MESSAGE_BYTES, CHANNEL_MAX_MESSAGE_HANDLES,
    CHANNEL_MAX_QUEUED_BYTES, CHANNEL_MAX_QUEUED_MESSAGES, DEADLINE_INFINITE, Error, ExitReason,
    HANDLE_INVALID, IMPORT_MODULE, InfoTopic, LISTENER_BACKLOG, Limit, NAME_MAX_BYTES, OK,
    ObjectType, PROCESS_CREATE_ISOLATED, ProcessState, Rights, SOCKET_MAX_BUFFERED_BYTES,
    SOCKET_MAX_TRANSFER_BYTES, SOCKET_SHUTDOWN_READ, SOCKET_SHUTDOWN_WRITE, Signals,
    WAIT_MANY_MAX_ITEMS,
};
use std::collections::BTreeMap;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/abi.md");

/// One line of the document: its 1-based number and its text.
type Line<'a> = (usize, &'a str);

fn read_doc() -> String {
    std::fs::read_to_string(DOC_PATH)
        .unwrap_or_else(|error| panic!("cannot read the ABI document {DOC_PATH}: {error}"))
}

/// The lines of the document outside fenced code blocks.
fn prose_lines(doc: &str) -> Vec<Line<'_>> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (index, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The level of a Markdown heading line (`## x` is 2), or `None`.
fn heading_level(line: &str) -> Option<usize> {
    let level = line.chars().take_while(|&c| c == '#').count();
    (level > 0 && line[level..].starts_with(' ')).then_some(level)
}

/// The lines under the heading `title` of `level`, up to the next heading of that level or
/// higher. Panics naming the heading if the document lacks it.
fn section<'a>(lines: &[Line<'a>], level: usize, title: &str) -> Vec<Line<'a>> {
    let wanted = format!("{} {title}", "#".repeat(level));
    let start = lines
        .iter()
        .position(|(_, line)| line.trim_end() == wanted)
        .unwrap_or_else(|| panic!("docs/abi.md has no heading `{wanted}`"));
    lines[start + 1..]
        .iter()
        .take_while(|(_, line)| heading_level(line).is_none_or(|found| found > level))
        .copied()
        .collect()
}

/// The headings of exactly `level` within `lines`, each with the lines under it.
fn subsections<'a>(lines: &[Line<'a>], level: usize) -> Vec<(Line<'a>, Vec<Line<'a>>)> {
    let mut result: Vec<(Line<'a>, Vec<Line<'a>>)> = Vec::new();
    for &(number, line) in lines {
        match heading_level(line) {
            Some(found) if found == level => {
                result.push(((number, line[level..].trim()), Vec::new()));
            }
            _ => {
                if let Some((_, body)) = result.last_mut() {
                    body.push((number, line));
                }
            }
        }
    }
    result
}

/// The body rows of the first Markdown table in `lines`, as trimmed cells (backticks kept).
fn first_table(lines: &[Line<'_>], what: &str) -> Vec<(usize, Vec<String>)> {
    let start = lines
        .iter()
        .position(|(_, line)| line.trim_start().starts_with('|'))
        .unwrap_or_else(|| panic!("docs/abi.md: the {what} section has no table"));
    let table: Vec<Line<'_>> = lines[start..]
        .iter()
        .take_while(|(_, line)| line.trim_start().starts_with('|'))
        .copied()
        .collect();
    assert!(
        table.len() >= 2 && table[1].1.contains("---"),
        "docs/abi.md line {}: the {what} table lacks its header separator row",
        table[0].0
    );
    table[2..].iter().map(|&(number, line)| (number, cells(line))).collect()
}

/// The cells of a table row; `\|` inside a cell is a literal bar.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut result = Vec::new();
    let mut cell = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => result.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    result.push(cell.trim().to_owned());
    result
}

/// The cell without backticks.
fn plain(cell: &str) -> String {
    cell.replace('`', "").trim().to_owned()
}

/// A number written as `-10`, `65536`, `65_536`, `0x1f` or `1 << 24` (backticks allowed).
fn parse_number(cell: &str) -> Option<i128> {
    let text: String = cell.chars().filter(|&c| c != '`' && c != '_').collect();
    let text = text.trim();
    if let Some((base, shift)) = text.split_once("<<") {
        let base: i128 = base.trim().parse().ok()?;
        let shift: u32 = shift.trim().parse().ok()?;
        return base.checked_mul(1i128.checked_shl(shift)?);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i128::from_str_radix(hex, 16).ok();
    }
    text.parse().ok()
}

/// Fails with every problem found, or passes if there are none.
fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "docs/abi.md disagrees with crates/abi ({what}):\n  - {}\n",
        problems.join("\n  - ")
    );
}

/// Compares a `name | value | ...` table with the expected `(name, value)` pairs: every expected
/// name once with its value, and no other rows.
fn check_named_values(
    rows: &[(usize, Vec<String>)],
    expected: &[(String, i128)],
    what: &str,
    problems: &mut Vec<String>,
) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (number, row) in rows {
        let Some(name_cell) = row.first() else {
            continue;
        };
        let name = plain(name_cell);
        if let Some(previous) = seen.insert(name.clone(), *number) {
            problems.push(format!(
                "line {number}: {what} `{name}` is listed again (first on line {previous})"
            ));
        }
        let value = row.get(1).and_then(|cell| parse_number(cell));
        match expected.iter().find(|(expected_name, _)| *expected_name == name) {
            None => problems.push(format!("line {number}: {what} `{name}` is not defined by the crate")),
            Some((_, expected_value)) => match value {
                Some(value) if value == *expected_value => {}
                Some(value) => problems.push(format!(
                    "line {number}: {what} `{name}` is {value} in the doc but {expected_value} in the crate"
                )),
                None => problems.push(format!(
                    "line {number}: {what} `{name}`: cannot read the value cell `{}` (expected {expected_value})",
                    row.get(1).map_or("", String::as_str)
                )),
            },
        }
    }
    for (name, value) in expected {
        if !seen.contains_key(name) {
            problems.push(format!("{what} `{name}` (= {value}) is missing from the table"));
        }
    }
}

fn type_name(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::I32 => "i32",
        ValueType::I64 => "i64",
    }
}

/// The signature line a call's section must have, backticks included.
fn signature(call: &Call) -> String {
    let params: Vec<String> = call
        .params
        .iter()
        .map(|&(name, value_type)| format!("{name}: {}", type_name(value_type)))
        .collect();
    let returns = match call.returns {
        Returns::Status => "status",
        Returns::Time => "i64",
        Returns::Never => "never",
    };
    format!("`{}({}) -> {returns}`", call.name, params.join(", "))
}

/// The name of a line shaped like a signature line (`` `name(...) -> kind` ``), if it is one.
fn signature_like(line: &str) -> Option<&str> {
    let line = line.trim();
    let inner = line.strip_prefix('`')?.strip_suffix('`')?;
    let (name, rest) = inner.split_once('(')?;
    let is_ident = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (is_ident && rest.contains(") -> ")).then_some(name)
}

/// The name in a bullet `` - `name`: text ``, if the line has that shape.
fn bullet_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("- `")?;
    let (name, after) = rest.split_once('`')?;
    after.starts_with(':').then_some(name)
}

fn error_names() -> Vec<&'static str> {
    Error::ALL.iter().map(|error| error.name()).collect()
}

/// Checks the body of one call's section (the lines after `### name`).
fn check_call_section(
    call: &Call,
    heading_line: usize,
    body: &[Line<'_>],
    problems: &mut Vec<String>,
) {
    let content: Vec<Line<'_>> =
        body.iter().filter(|(_, line)| !line.trim().is_empty()).copied().collect();
    let name = call.name;
    let expected = signature(call);
    match content.first() {
        Some(&(number, line)) if line.trim() != expected => problems.push(format!(
            "line {number}: the signature of `{name}` is {} but calls::CALLS gives {expected}",
            line.trim()
        )),
        None => problems.push(format!("line {heading_line}: the section of `{name}` is empty")),
        Some(_) => {}
    }

    let find = |prefix: &str| content.iter().position(|(_, line)| line.starts_with(prefix));
    let markers =
        ["Arguments:", "Returns:", "Errors:", "Notes:"].map(|marker| (marker, find(marker)));
    let mut positions = [0; 4];
    for (slot, (marker, position)) in positions.iter_mut().zip(markers) {
        match position {
            Some(position) => *slot = position,
            None => {
                problems.push(format!(
                    "line {heading_line}: the section of `{name}` has no `{marker}` paragraph"
                ));
                return;
            }
        }
    }
    let [arguments, returns, errors, notes] = positions;
    if !(0 < arguments && arguments < returns && returns < errors && errors < notes) {
        problems.push(format!(
            "line {heading_line}: the section of `{name}` must have its signature, then Arguments:, Returns:, Errors:, Notes: in this order"
        ));
        return;
    }

    // Arguments: each parameter as a bullet, in order, or "none".
    let (arguments_line, arguments_text) = content[arguments];
    let bullets: Vec<Line<'_>> = content[arguments + 1..returns]
        .iter()
        .filter(|(_, line)| line.starts_with("- "))
        .copied()
        .collect();
    if call.params.is_empty() {
        if arguments_text.trim() != "Arguments: none." || !bullets.is_empty() {
            problems.push(format!("line {arguments_line}: `{name}` has no parameters, so its arguments must read `Arguments: none.`"));
        }
    } else {
        let mut documented = Vec::new();
        for &(number, line) in &bullets {
            match bullet_name(line) {
                Some(parameter) => documented.push(parameter),
                None => problems.push(format!(
                    "line {number}: an argument bullet of `{name}` must read `- `parameter`: ...`"
                )),
            }
        }
        let expected: Vec<&str> = call.params.iter().map(|&(parameter, _)| parameter).collect();
        if documented != expected {
            problems.push(format!(
                "line {arguments_line}: the arguments of `{name}` explain {documented:?} but calls::CALLS has the parameters {expected:?}"
            ));
        }
    }

    // Errors: one bullet per known error, or "none" (always "none" for calls that return no status).
    let (errors_line, errors_text) = content[errors];
    let bullets: Vec<Line<'_>> = content[errors + 1..notes]
        .iter()
        .filter(|(_, line)| line.starts_with("- "))
        .copied()
        .collect();
    let known = error_names();
    if errors_text.trim() == "Errors: none." {
        if !bullets.is_empty() {
            problems.push(format!(
                "line {errors_line}: `{name}` says `Errors: none.` but lists errors"
            ));
        }
    } else {
        if bullets.is_empty() {
            problems.push(format!(
                "line {errors_line}: `{name}` lists no errors; write `Errors: none.` if it has none"
            ));
        }
        if call.returns != Returns::Status {
            problems.push(format!("line {errors_line}: `{name}` returns no status, so its errors must read `Errors: none.`"));
        }
        for &(number, line) in &bullets {
            match bullet_name(line) {
                Some(error) if known.contains(&error) => {}
                Some(error) => problems.push(format!(
                    "line {number}: `{name}` lists `{error}`, which is not in Error::ALL"
                )),
                None => problems.push(format!(
                    "line {number}: an error bullet of `{name}` must read `- `ERR_NAME`: ...`"
                )),
            }
        }
    }
    let documented: Vec<Line<'_>> = bullets
        .iter()
        .filter_map(|&(number, line)| bullet_name(line).map(|error| (number, error)))
        .collect();
    check_error_list(call, errors_line, &documented, problems);
}

/// Compares the `ERR_*` bullets of a call's `Errors:` paragraph (line, name) with the call's
/// `errors` in `calls::CALLS`: the same names in the same order, naming the first line that
/// differs.
fn check_error_list(
    call: &Call,
    errors_line: usize,
    documented: &[Line<'_>],
    problems: &mut Vec<String>,
) {
    let expected: Vec<&str> = call.errors.iter().map(|error| error.name()).collect();
    let names: Vec<&str> = documented.iter().map(|&(_, error)| error).collect();
    if names == expected {
        return;
    }
    let name = call.name;
    let position = names.iter().zip(&expected).take_while(|(doc, crate_)| doc == crate_).count();
    let (number, what) = match (documented.get(position), expected.get(position)) {
        (Some(&(number, error)), Some(wanted)) => {
            (number, format!("lists `{error}` where calls::CALLS has `{wanted}`"))
        }
        (Some(&(number, error)), None) => {
            (number, format!("lists `{error}`, past the end of the list in calls::CALLS"))
        }
        (None, Some(wanted)) => (
            documented.last().map_or(errors_line, |&(number, _)| number),
            format!("ends before `{wanted}`, which calls::CALLS lists next"),
        ),
        (None, None) => (errors_line, String::from("differs")),
    };
    let missing: Vec<&str> =
        expected.iter().filter(|error| !names.contains(error)).copied().collect();
    let extra: Vec<&str> =
        names.iter().filter(|error| !expected.contains(error)).copied().collect();
    problems.push(format!(
        "line {number}: the error list of `{name}` {what} (error {}); the doc lists {names:?}, \
         calls::CALLS lists {expected:?}; missing from the doc: {missing:?}, not in the crate: \
         {extra:?}",
        position + 1
    ));
}

#[test]
fn call_sections_match_the_call_table() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let calls_section = section(&lines, 2, "Calls");
    let sections = subsections(&calls_section, 3);
    let mut problems = Vec::new();

    for ((number, title), _) in &sections {
        if nebulet_abi::calls::find(title).is_none() {
            problems.push(format!(
                "line {number}: section `### {title}` names no call in calls::CALLS"
            ));
        }
    }
    for call in CALLS {
        let matching: Vec<_> =
            sections.iter().filter(|((_, title), _)| *title == call.name).collect();
        match matching.as_slice() {
            [] => problems.push(format!(
                "call `{}` of calls::CALLS has no `### {}` section",
                call.name, call.name
            )),
            [((number, _), body)] => check_call_section(call, *number, body, &mut problems),
            [((number, _), _), ..] => problems
                .push(format!("line {number}: call `{}` has more than one section", call.name)),
        }
    }
    let documented: Vec<&str> = sections
        .iter()
        .map(|((_, title), _)| *title)
        .filter(|title| nebulet_abi::calls::find(title).is_some())
        .collect();
    let table: Vec<&str> =
        CALLS.iter().map(|call| call.name).filter(|name| documented.contains(name)).collect();
    if let Some(position) = documented.iter().zip(&table).position(|(doc, crate_)| doc != crate_) {
        problems.push(format!(
            "the call sections are out of order: section {} is `{}`, but calls::CALLS has `{}` there",
            position + 1,
            documented[position],
            table[position]
        ));
    }

    // A signature line anywhere else (outside the Calls section, or a second one) would document
    // a call the table lacks, or document one twice.
    let mut signature_lines: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &(number, line) in &lines {
        if let Some(name) = signature_like(line) {
            signature_lines.entry(name).or_default().push(number);
        }
    }
    for (name, numbers) in &signature_lines {
        if nebulet_abi::calls::find(name).is_none() {
            problems.push(format!(
                "line {}: a signature line for `{name}`, which is not in calls::CALLS",
                numbers[0]
            ));
        } else if numbers.len() > 1 {
            problems.push(format!("lines {numbers:?}: more than one signature line for `{name}`"));
        }
    }
    report("call sections", &problems);
}

#[test]
fn error_names_exist_and_status_table_matches() {
    let doc = read_doc();
    let known = error_names();
    let mut problems = Vec::new();

    for (index, line) in doc.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut start = 0;
        while let Some(found) = line[start..].find("ERR_") {
            let at = start + found;
            let end = at
                + line[at..]
                    .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(line.len() - at);
            start = end;
            let glued = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            let name = &line[at..end];
            if glued || (name == "ERR_" && bytes.get(end) == Some(&b'*')) {
                continue;
            }
            if !known.contains(&name) {
                problems.push(format!(
                    "line {}: `{name}` is not a status code of Error::ALL",
                    index + 1
                ));
            }
        }
    }

    let lines = prose_lines(&doc);
    let rows = first_table(&section(&lines, 2, "Status codes"), "status codes");
    let mut expected: Vec<(String, i128)> = vec![("OK".to_owned(), OK.into())];
    expected.extend(Error::ALL.iter().map(|error| (error.name().to_owned(), error.code().into())));
    check_named_values(&rows, &expected, "status code", &mut problems);
    report("status codes", &problems);
}

#[test]
fn rights_and_signals_tables_match() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let mut problems = Vec::new();

    let rows = first_table(&section(&lines, 2, "Rights"), "rights");
    let mut expected: Vec<(String, i128)> =
        Rights::NAMED.iter().map(|&(name, right)| (name.to_owned(), right.bits().into())).collect();
    expected.push(("SAME_RIGHTS".to_owned(), Rights::SAME_RIGHTS.bits().into()));
    check_named_values(&rows, &expected, "right", &mut problems);

    let rows = first_table(&section(&lines, 2, "Signals"), "signals");
    let expected: Vec<(String, i128)> = Signals::NAMED
        .iter()
        .map(|&(name, signal)| (name.to_owned(), signal.bits().into()))
        .collect();
    check_named_values(&rows, &expected, "signal", &mut problems);
    report("rights and signals", &problems);
}

#[test]
fn limits_and_constants_match() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let mut problems = Vec::new();

    let rows = first_table(&section(&lines, 2, "Limits"), "limits");
    let expected: Vec<(String, i128)> = [
        ("CHANNEL_MAX_MESSAGE_BYTES", CHANNEL_MAX_MESSAGE_BYTES),
        ("CHANNEL_MAX_MESSAGE_HANDLES", CHANNEL_MAX_MESSAGE_HANDLES),
        ("CHANNEL_MAX_QUEUED_MESSAGES", CHANNEL_MAX_QUEUED_MESSAGES),
        ("CHANNEL_MAX_QUEUED_BYTES", CHANNEL_MAX_QUEUED_BYTES),
        ("WAIT_MANY_MAX_ITEMS", WAIT_MANY_MAX_ITEMS),
        ("NAME_MAX_BYTES", NAME_MAX_BYTES),
        ("BUFFER_MAX_BYTES", BUFFER_MAX_BYTES),
        ("SOCKET_MAX_BUFFERED_BYTES", SOCKET_MAX_BUFFERED_BYTES),
        ("SOCKET_MAX_TRANSFER_BYTES", SOCKET_MAX_TRANSFER_BYTES),
        ("LISTENER_BACKLOG", LISTENER_BACKLOG),
        ("SOCKET_SHUTDOWN_WRITE", SOCKET_SHUTDOWN_WRITE),
        ("SOCKET_SHUTDOWN_READ", SOCKET_SHUTDOWN_READ),
        ("PROCESS_CREATE_ISOLATED", PROCESS_CREATE_ISOLATED),
    ]
    .iter()
    .map(|&(name, value)| (name.to_owned(), value.into()))
    .collect();
    check_named_values(&rows, &expected, "limit", &mut problems);

    // The resource limits are named by their manifest keys, with their `Limit` values.
    let rows = first_table(&section(&lines, 2, "Resource limits"), "resource limits");
    let expected: Vec<(String, i128)> =
        Limit::ALL.iter().map(|&limit| (limit.key().to_owned(), (limit as u32).into())).collect();
    check_named_values(&rows, &expected, "resource limit", &mut problems);

    let rows = first_table(&section(&lines, 2, "Constants"), "constants");
    let (module_rows, numeric_rows): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(_, row)| row.first().is_some_and(|name| plain(name) == "IMPORT_MODULE"));
    let expected = vec![
        ("HANDLE_INVALID".to_owned(), HANDLE_INVALID.into()),
        ("DEADLINE_INFINITE".to_owned(), DEADLINE_INFINITE.into()),
    ];
    check_named_values(&numeric_rows, &expected, "constant", &mut problems);
    match module_rows.as_slice() {
        [(number, row)] => {
            let value = row.get(1).map(|cell| plain(cell)).unwrap_or_default();
            if value != IMPORT_MODULE {
                problems.push(format!("line {number}: IMPORT_MODULE is `{value}` in the doc but `{IMPORT_MODULE}` in the crate"));
            }
        }
        _ => problems.push("the constants table must list `IMPORT_MODULE` once".to_owned()),
    }

    for (prefix, name) in [(MANIFEST_PREFIX, "MANIFEST_PREFIX"), (APP_PREFIX, "APP_PREFIX")] {
        let text = format!("`{}`", String::from_utf8_lossy(prefix));
        if !section(&lines, 2, "Bootstrap protocol").iter().any(|(_, line)| line.contains(&text)) {
            problems
                .push(format!("the bootstrap protocol section does not mention {name} as {text}"));
        }
    }
    report("limits and constants", &problems);
}

#[test]
fn default_rights_match() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let rows = first_table(&section(&lines, 2, "Default rights"), "default rights");
    let expected = [
        ("channel endpoint", Rights::CHANNEL_DEFAULT),
        ("event", Rights::EVENT_DEFAULT),
        ("timer", Rights::TIMER_DEFAULT),
        ("module", Rights::MODULE_DEFAULT),
        ("process", Rights::PROCESS_DEFAULT),
        ("socket end", Rights::SOCKET_DEFAULT),
        ("listener", Rights::LISTENER_DEFAULT),
        ("connector", Rights::CONNECTOR_DEFAULT),
    ];
    let mut problems = Vec::new();
    for (kind, rights) in expected {
        let matching: Vec<_> = rows
            .iter()
            .filter(|(_, row)| row.first().map(|cell| plain(cell)).as_deref() == Some(kind))
            .collect();
        let [(number, row)] = matching.as_slice() else {
            problems
                .push(format!("the default rights table must have exactly one row for `{kind}`"));
            continue;
        };
        let cell = row.get(2).map_or("", String::as_str);
        let mut documented = Rights::NONE;
        for word in cell
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
        {
            match Rights::NAMED.iter().find(|&&(name, _)| name == word) {
                Some(&(_, right)) => documented |= right,
                None => problems.push(format!(
                    "line {number}: `{word}` in the rights of `{kind}` is not a right"
                )),
            }
        }
        if documented != rights {
            problems.push(format!("line {number}: the doc gives `{kind}` the rights {documented:?} but the crate gives {rights:?}"));
        }
    }
    for (number, row) in &rows {
        let kind = row.first().map(|cell| plain(cell)).unwrap_or_default();
        if !expected.iter().any(|&(name, _)| name == kind) {
            problems.push(format!("line {number}: the default rights table names `{kind}`, which has no *_DEFAULT in the crate"));
        }
    }
    report("default rights", &problems);
}

#[test]
fn enumeration_tables_match() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let mut problems = Vec::new();
    let owned = |pairs: &[(&str, u32)]| -> Vec<(String, i128)> {
        pairs.iter().map(|&(name, value)| (name.to_owned(), value.into())).collect()
    };

    let object_types = [
        ("channel", ObjectType::Channel as u32),
        ("event", ObjectType::Event as u32),
        ("timer", ObjectType::Timer as u32),
        ("module", ObjectType::Module as u32),
        ("process", ObjectType::Process as u32),
        ("socket", ObjectType::Socket as u32),
        ("listener", ObjectType::Listener as u32),
        ("connector", ObjectType::Connector as u32),
    ];
    let rows = first_table(&section(&lines, 2, "Object types"), "object types");
    check_named_values(&rows, &owned(&object_types), "object type", &mut problems);

    let states = [
        ("created", ProcessState::Created as u32),
        ("running", ProcessState::Running as u32),
        ("ended", ProcessState::Ended as u32),
    ];
    let rows = first_table(&section(&lines, 2, "Process states"), "process states");
    check_named_values(&rows, &owned(&states), "process state", &mut problems);

    let reasons: Vec<(String, i128)> = (0..=u8::MAX.into())
        .filter_map(|raw: u32| {
            ExitReason::from_raw(raw).map(|reason| (reason.word().to_owned(), raw.into()))
        })
        .collect();
    let rows = first_table(&section(&lines, 2, "Exit reasons"), "exit reasons");
    check_named_values(&rows, &reasons, "exit reason", &mut problems);

    let topics = [
        ("BASIC", InfoTopic::Basic as u32),
        ("PROCESS", InfoTopic::Process as u32),
        ("BUDGET", InfoTopic::Budget as u32),
    ];
    let rows = first_table(&section(&lines, 2, "Info topics"), "info topics");
    check_named_values(&rows, &owned(&topics), "info topic", &mut problems);
    for (number, row) in &rows {
        let record = row.get(2).map_or("", String::as_str);
        let size = match plain(&row[0]).as_str() {
            "BASIC" => format!("`InfoBasic` ({} bytes)", InfoBasic::SIZE),
            "PROCESS" => format!("`InfoProcess` ({} bytes)", InfoProcess::SIZE),
            "BUDGET" => format!("`InfoBudget` ({} bytes)", InfoBudget::SIZE),
            _ => continue,
        };
        if record != size {
            problems.push(format!(
                "line {number}: the record of topic {} is `{record}`, expected `{size}`",
                row[0]
            ));
        }
    }
    report("object types, process states, exit reasons, info topics", &problems);
}

/// Checks one layout table: rows `offset | size | type | field | meaning` that cover the record
/// without gaps, and whose fields sit where `to_bytes` puts them.
fn check_layout(
    lines: &[Line<'_>],
    name: &str,
    size: usize,
    bytes: &[u8],
    field_value: impl Fn(&str) -> Option<u64>,
    problems: &mut Vec<String>,
) {
    let sections = subsections(lines, 3);
    let Some((_, body)) = sections.iter().find(|((_, title), _)| *title == name) else {
        problems.push(format!("the data structures section has no `### {name}`"));
        return;
    };
    let size_text = format!("{size} bytes");
    if !body.iter().any(|(_, line)| !line.starts_with('|') && line.contains(&size_text)) {
        problems.push(format!("the `### {name}` section does not say it is {size_text}"));
    }
    let mut next_offset = 0;
    let mut fields = Vec::new();
    for (number, row) in first_table(body, name) {
        let [offset, width, ty, field, ..] = row.as_slice() else {
            problems
                .push(format!("line {number}: a {name} row needs offset, size, type and field"));
            continue;
        };
        let field = plain(field);
        let (Some(offset), Some(width)) = (parse_number(offset), parse_number(width)) else {
            problems
                .push(format!("line {number}: cannot read the offset and size of {name}.{field}"));
            continue;
        };
        let (Ok(offset), Ok(width)) = (usize::try_from(offset), usize::try_from(width)) else {
            problems.push(format!("line {number}: bad offset or size of {name}.{field}"));
            continue;
        };
        if offset != next_offset {
            problems.push(format!("line {number}: {name}.{field} is at offset {offset}, but the previous field ends at {next_offset}"));
        }
        next_offset = offset + width;
        let type_width = match plain(ty).as_str() {
            "u32" | "i32" => 4,
            "u64" | "i64" => 8,
            other => {
                problems.push(format!("line {number}: unknown type `{other}` of {name}.{field}"));
                continue;
            }
        };
        if type_width != width {
            problems.push(format!(
                "line {number}: {name}.{field} is a {} but has size {width}",
                plain(ty)
            ));
        }
        let Some(expected) = field_value(&field) else {
            problems.push(format!("line {number}: `{field}` is not a field of {name}"));
            continue;
        };
        fields.push(field.clone());
        match bytes.get(offset..offset + width) {
            Some(slice) => {
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(slice);
                let found = u64::from_le_bytes(word);
                let expected = if width == 4 { expected & 0xffff_ffff } else { expected };
                if found != expected {
                    problems.push(format!(
                        "line {number}: {name}.{field} is not at offset {offset} (size {width}) in {name}::to_bytes"
                    ));
                }
            }
            None => problems
                .push(format!("line {number}: {name}.{field} lies past the record's {size} bytes")),
        }
    }
    if next_offset != size {
        problems.push(format!(
            "the fields of {name} cover {next_offset} bytes but {name}::SIZE is {size}"
        ));
    }
    fields.sort();
    fields.dedup();
    let budget_fields: Vec<String> = budget_field_names().collect();
    let all_fields_known = [
        "koid",
        "object_type",
        "rights",
        "state",
        "exit_code",
        "exit_reason",
        "threads",
        "memory_bytes",
        "cpu_ns",
        "handle",
        "wait_for",
        "pending",
    ];
    let expected_count = all_fields_known
        .iter()
        .copied()
        .chain(budget_fields.iter().map(String::as_str))
        .filter(|field| field_value(field).is_some())
        .count();
    if fields.len() != expected_count {
        problems.push(format!(
            "the {name} table lists the fields {fields:?}; the struct has {expected_count}"
        ));
    }
}

/// The fields of the BUDGET record: `KEY_used`, `KEY_limit` and `KEY_available` per limit.
fn budget_field_names() -> impl Iterator<Item = String> {
    Limit::ALL.into_iter().flat_map(|limit| {
        ["used", "limit", "available"].map(|which| format!("{}_{which}", limit.key()))
    })
}

#[test]
fn layouts_match() {
    let doc = read_doc();
    let lines = prose_lines(&doc);
    let structures = section(&lines, 2, "Data structures");
    let mut problems = Vec::new();

    // Distinct values in every byte, so a field at the wrong offset cannot match by chance.
    let basic =
        InfoBasic { koid: 0x0102_0304_0506_0708, object_type: 0x1112_1314, rights: 0x2122_2324 };
    check_layout(
        &structures,
        "InfoBasic",
        InfoBasic::SIZE,
        &basic.to_bytes(),
        |field| match field {
            "koid" => Some(basic.koid),
            "object_type" => Some(basic.object_type.into()),
            "rights" => Some(basic.rights.into()),
            _ => None,
        },
        &mut problems,
    );

    let process = InfoProcess {
        state: 0x3132_3334,
        exit_code: -0x4142_4344,
        exit_reason: 0x5152_5354,
        threads: 0x6162_6364,
        memory_bytes: 0x7172_7374_7576_7778,
        cpu_ns: 0x0a0b_0c0d_0e0f_1a1b,
    };
    check_layout(
        &structures,
        "InfoProcess",
        InfoProcess::SIZE,
        &process.to_bytes(),
        |field| match field {
            "state" => Some(process.state.into()),
            "exit_code" => Some(u32::from_le_bytes(process.exit_code.to_le_bytes()).into()),
            "exit_reason" => Some(process.exit_reason.into()),
            "threads" => Some(process.threads.into()),
            "memory_bytes" => Some(process.memory_bytes),
            "cpu_ns" => Some(process.cpu_ns),
            _ => None,
        },
        &mut problems,
    );

    let mut budget = InfoBudget::default();
    for index in 0..6 {
        let base = 0x0101_0101_0101_0101u64 * (3 * index as u64 + 1);
        budget.used[index] = base;
        budget.limit[index] = base + 0x0001_0001_0001_0001;
        budget.available[index] = base + 0x0002_0002_0002_0002;
    }
    check_layout(
        &structures,
        "InfoBudget",
        InfoBudget::SIZE,
        &budget.to_bytes(),
        |field| {
            let (key, which) = field.rsplit_once('_')?;
            let index = Limit::ALL.iter().position(|limit| limit.key() == key)?;
            match which {
                "used" => Some(budget.used[index]),
                "limit" => Some(budget.limit[index]),
                "available" => Some(budget.available[index]),
                _ => None,
            }
        },
        &mut problems,
    );

    let item = WaitItem { handle: 0x8182_8384, wait_for: 0x9192_9394, pending: 0xa1a2_a3a4 };
    check_layout(
        &structures,
        "WaitItem",
        WaitItem::SIZE,
        &item.to_bytes(),
        |field| match field {
            "handle" => Some(item.handle.into()),
            "wait_for" => Some(item.wait_for.into()),
            "pending" => Some(item.pending.into()),
            _ => None,
        },
        &mut problems,
    );
    report("data structure layouts", &problems);
}
