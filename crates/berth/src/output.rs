//! Printing API answers: a table for people (default) or the JSON itself
//! (`--output json`), the same data either way.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A column: header and JSON pointer into each row (`/identity/login`).
pub type Column = (&'static str, &'static str);

fn cell(v: Option<&Value>) -> String {
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

/// Prints `value` (an array of rows, or one row) in `format`.
pub fn print(value: &Value, columns: &[Column], format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
        return;
    }
    let rows: Vec<&Value> = match value {
        Value::Array(rows) => rows.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(columns.iter().map(|c| c.0));
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(row.pointer(c.1))));
    }
    println!("{table}");
}

/// Prints a secret that will not be shown again.
pub fn print_secret(what: &str, value: &Value, format: Format) {
    if format == Format::Json {
        print(value, &[], format);
        return;
    }
    println!("{what}");
    if let Some(secrets) = value.as_array() {
        for s in secrets {
            println!(
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
    println!("Store it now: it is not kept by the registry and cannot be shown again.");
}
