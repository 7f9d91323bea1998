//! Printing answers: aligned tables for people, JSON for scripts.

use serde_json::Value;

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A cell's text: strings as they are, arrays joined, null as "-".
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A field's text as every command shows it: a `priority` as `P<n>`, the rest as [`cell`].
pub fn field(name: &str, v: &Value) -> String {
    match (name, v) {
        ("priority", Value::Number(n)) => format!("P{n}"),
        _ => cell(v),
    }
}

/// Who did something: a person's name, or an agent's marked as one; `-` for Loom itself.
pub fn who(name: &Value, agent_id: &Value) -> String {
    match (name.as_str(), agent_id.is_null()) {
        (Some(name), true) => name.to_owned(),
        (Some(name), false) => format!("{name} (agent)"),
        (None, false) => "a deleted agent".to_owned(),
        (None, true) => "-".to_owned(),
    }
}

/// Prints rows as an aligned table; `columns` pairs a header with a field name (shown as
/// [`field`] shows it); long cells are cut.
pub fn table(rows: &Value, columns: &[(&str, &str)]) {
    let empty = Vec::new();
    let rows = rows.as_array().unwrap_or(&empty);
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns.iter().map(|(_, name)| truncate(&field(name, &row[*name]), 60)).collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(h.len())
        })
        .collect();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> =
            values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}", w = *w)).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max - 1).collect::<String>())
    }
}
