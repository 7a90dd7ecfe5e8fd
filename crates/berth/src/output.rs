//! Printing API answers: a table for people (default) or the JSON itself
//! (`--output json`), the same data either way.
//!
//! Everything a command prints on standard output goes through [`emit`]
//! (the [`outln!`] macro), which ends the process quietly when the reader
//! has gone away (`berth sp list | head -1`) instead of panicking as
//! `println!` does.

use std::io::{IsTerminal, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, fitted to the terminal's width.
    Table,
    /// The registry's JSON, pretty-printed.
    Json,
}

/// `println!` for command output: see [`emit`].
macro_rules! outln {
    () => {
        $crate::output::emit("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `println!` for the report of a command that must run to its end
/// whoever reads (`berth migrate`, `berth recover`): write errors, a closed
/// pipe included, are ignored instead of stopping it half-way.
macro_rules! reportln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use reportln;

/// Writes `text` to standard output.
///
/// When the reader has closed the pipe (`berth ... | head -1`), the process
/// exits at once with status 0 and prints nothing more, as ripgrep and other
/// Rust tools do: the reader took what it wanted, and a script with
/// `set -o pipefail` does not fail on `| head`. (A C tool killed by SIGPIPE
/// shows as 141 instead; Rust ignores SIGPIPE, so the write fails with
/// EPIPE and we choose the quiet success.) Any other write error (a full
/// disk behind a redirection) is reported and exits with status 1.
pub fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints a JSON document, pretty.
pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A column: header and JSON pointer into each row (`/identity/login`).
pub type Column = (&'static str, &'static str);

pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// The width tables are fitted to when standard output is not a terminal
/// (a pipe, a file): `COLUMNS` when set, else 120.
pub const DEFAULT_WIDTH: u16 = 120;

fn width_when_not_a_terminal(columns: Option<&str>) -> u16 {
    columns
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(DEFAULT_WIDTH)
}

/// A table fitted to the terminal (or to [`DEFAULT_WIDTH`]): long cells
/// wrap instead of making 300-column lines.
fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::stdout().is_terminal() {
        let columns = std::env::var("COLUMNS").ok();
        table.set_width(width_when_not_a_terminal(columns.as_deref()));
    }
    table
}

/// Prints `value` (an array of rows, or one row) in `format`.
pub fn print(value: &Value, columns: &[Column], format: Format) {
    if format == Format::Json {
        print_json(value);
        return;
    }
    let rows: Vec<&Value> = match value {
        Value::Array(rows) => rows.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let mut table = new_table();
    table.set_header(columns.iter().map(|c| c.0));
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(row.pointer(c.1))));
    }
    outln!("{table}");
}

/// Prints a secret that will not be shown again.
pub fn print_secret(what: &str, value: &Value, format: Format) {
    if format == Format::Json {
        print_json(value);
        return;
    }
    outln!("{what}");
    if let Some(secrets) = value.as_array() {
        for s in secrets {
            outln!(
                "  {}: {}{}",
                cell(s.get("name")),
                cell(s.get("value")),
                s.get("expiresAt")
                    .and_then(Value::as_str)
                    .map(|e| format!("  (expires {e})"))
                    .unwrap_or_default()
            );
        }
    }
    outln!("Store it now: it is not kept by the registry and cannot be shown again.");
}

/// At most `max` characters of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// What a change did, for a table cell: with two objects, only the keys
/// whose values differ (`key: old → new`); otherwise the value that was
/// created (`+ ...`) or removed (`- ...`). Values are cut at 60
/// characters: `-o json` has them whole.
pub fn summarise_change(before: Option<&Value>, after: Option<&Value>) -> String {
    const MAX: usize = 60;
    let compact = |v: &Value| shorten(&v.to_string(), MAX);
    let before = before.filter(|v| !v.is_null());
    let after = after.filter(|v| !v.is_null());
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            let lines: Vec<String> = keys
                .into_iter()
                .filter(|k| b.get(*k) != a.get(*k))
                .map(|k| {
                    let side = |v: Option<&Value>| v.map(compact).unwrap_or_else(|| "—".into());
                    format!("{k}: {} → {}", side(b.get(k)), side(a.get(k)))
                })
                .collect();
            if lines.is_empty() {
                "(no change)".to_string()
            } else {
                lines.join("\n")
            }
        }
        (Some(b), Some(a)) => format!("{} → {}", compact(b), compact(a)),
        (None, Some(a)) => format!("+ {}", compact(a)),
        (Some(b), None) => format!("- {}", compact(b)),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_show_only_the_keys_that_changed() {
        let before = json!({ "defaultAction": "Allow", "ipRules": ["10.0.0.0/8"], "same": 1 });
        let after =
            json!({ "defaultAction": "Deny", "ipRules": ["10.0.0.0/8"], "same": 1, "new": true });
        assert_eq!(
            summarise_change(Some(&before), Some(&after)),
            "defaultAction: \"Allow\" → \"Deny\"\nnew: — → true"
        );
        assert_eq!(
            summarise_change(None, Some(&json!({"a": 1}))),
            "+ {\"a\":1}"
        );
        assert_eq!(summarise_change(Some(&json!(1)), None), "- 1");
        assert_eq!(summarise_change(Some(&Value::Null), None), "");
        let long = json!({ "k": "x".repeat(500) });
        let summary = summarise_change(None, Some(&long));
        assert_eq!(summary.chars().count(), 2 + 60, "{summary}");
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn width_off_a_terminal() {
        assert_eq!(width_when_not_a_terminal(None), 120);
        assert_eq!(width_when_not_a_terminal(Some("80")), 80);
        assert_eq!(width_when_not_a_terminal(Some("junk")), 120);
        assert_eq!(width_when_not_a_terminal(Some("3")), 120);
    }
}
