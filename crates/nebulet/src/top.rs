//! `nebulet top`: a live view of the processes of a command with a control socket: a terminal
//! UI (ratatui) on a terminal, else `ps` tables one after another (for pipes and tests).

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Constraint;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use crate::control::{COLUMNS, ask, print};

/// Refreshes every `interval` until the command whose control socket is `path` ends (or, in
/// the terminal UI, until q, Esc or Ctrl-C).
pub(crate) fn top(path: &Path, interval: Duration) -> Result<u8, String> {
    if std::io::stdout().is_terminal() { live(path, interval) } else { plain(path, interval) }
}

/// Says on stderr that the watched command ended (its socket is gone).
fn ended(path: &Path) -> Result<u8, String> {
    eprintln!("nebulet: {}: the command ended", path.display());
    Ok(0)
}

/// Not a terminal: one `ps` table after another, a blank line between.
fn plain(path: &Path, interval: Duration) -> Result<u8, String> {
    let mut first = true;
    loop {
        let table = match ask(path, "table") {
            Ok(table) => table,
            Err(_) if !first => return ended(path),
            Err(message) => return Err(message),
        };
        print(&if first { table } else { format!("\n{table}") })?;
        first = false;
        std::thread::sleep(interval);
    }
}

/// The terminal UI, on the alternate screen in raw mode; the terminal is restored on every way
/// out (ratatui's panic hook restores it on a panic).
fn live(path: &Path, interval: Duration) -> Result<u8, String> {
    // Asked once before the screen changes, so an unreachable socket is a plain one-line error.
    let mut listing = ask(path, "fields")?;
    let mut terminal = ratatui::try_init().map_err(|error| {
        // It may have changed the terminal before it failed.
        ratatui::restore();
        format!("cannot set up the terminal: {error}")
    })?;
    let outcome = refresh(&mut terminal, path, interval, &mut listing);
    // Dropped first: dropping it shows the cursor, which belongs before any message.
    drop(terminal);
    ratatui::restore();
    match outcome {
        Ok(View::Quit) => Ok(0),
        Ok(View::Ended) => ended(path),
        Err(error) => Err(format!("the terminal: {error}")),
    }
}

/// How the live view ended.
enum View {
    /// The user quit.
    Quit,
    /// The watched command ended.
    Ended,
}

/// Draws `listing`, then the command's listing again every `interval`, reading keys between.
fn refresh(
    terminal: &mut DefaultTerminal,
    path: &Path,
    interval: Duration,
    listing: &mut String,
) -> std::io::Result<View> {
    loop {
        terminal.draw(|frame| draw(frame, path, interval, listing))?;
        let next = Instant::now() + interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if event::poll(left)?
                && let Event::Key(key) = event::read()?
                && quits(key)
            {
                return Ok(View::Quit);
            }
        }
        match ask(path, "fields") {
            Ok(next) => *listing = next,
            Err(_) => return Ok(View::Ended),
        }
    }
}

/// Whether `key` ends the view: q, Esc or Ctrl-C (raw mode turns Ctrl-C into a key).
fn quits(key: KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// One screen: a table of the processes (the control socket's `fields` lines) in a titled box.
fn draw(frame: &mut Frame<'_>, path: &Path, interval: Duration, listing: &str) {
    let rows: Vec<Row<'_>> = listing
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            let state = cells.get(2).copied().unwrap_or_default();
            Row::new(cells).style(state_style(state))
        })
        .collect();
    let count = rows.len();
    let widths = [
        Constraint::Length(8),
        Constraint::Min(12),
        Constraint::Length(14),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let title = format!(
        " nebulet top: {} - {count} process{} - every {interval:?} ",
        path.display(),
        if count == 1 { "" } else { "es" }
    );
    let table = Table::new(rows, widths)
        .header(Row::new(COLUMNS).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(title).title_bottom(" q quits "));
    frame.render_widget(table, frame.area());
}

/// Running processes stand out, ended ones fade.
fn state_style(state: &str) -> Style {
    match state.split(':').next() {
        Some("running") => Style::new().fg(Color::Green),
        Some("ready") => Style::new().fg(Color::Yellow),
        Some("exited") => Style::new().fg(Color::DarkGray),
        _ => Style::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn the_screen_shows_each_process_under_the_columns() {
        let mut terminal = Terminal::new(TestBackend::new(110, 6)).unwrap();
        let listing = "7\tsleeper\tblocked:sleep\t1\t0.001s\t64K\t2\t0B\t3\tlocal\n\
                       9\tinit\trunning\t1\t0.500s\t128K\t9\t16B\t0\tlocal\n";
        let path = Path::new("/run/demo.sock");
        terminal.draw(|frame| draw(frame, path, Duration::from_secs(1), listing)).unwrap();
        let screen: Vec<String> = terminal
            .backend()
            .buffer()
            .content
            .chunks(110)
            .map(|line| line.iter().map(|cell| cell.symbol()).collect())
            .collect();
        let words = |line: &str| {
            line.split([' ', '│']).filter(|word| !word.is_empty()).collect::<Vec<_>>().join(" ")
        };
        assert!(
            screen[0].contains("nebulet top: /run/demo.sock - 2 processes - every 1s"),
            "{screen:#?}"
        );
        assert_eq!(words(&screen[1]), COLUMNS.join(" "), "{screen:#?}");
        assert_eq!(words(&screen[2]), "7 sleeper blocked:sleep 1 0.001s 64K 2 0B 3 local");
        assert_eq!(words(&screen[3]), "9 init running 1 0.500s 128K 9 16B 0 local");
        assert!(screen[5].contains("q quits"), "{screen:#?}");
    }

    #[test]
    fn q_escape_and_control_c_quit() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(quits(key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
