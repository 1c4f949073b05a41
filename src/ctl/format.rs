//! Rows of API values to text: a boxed table (rabbitmqctl's `pretty_table`), tab-separated
//! values (rabbitmqctl's plain `table`, for scripts), or JSON (one object per row, keys in the
//! columns' order, values as the API gave them).

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Formatter {
    /// A boxed table, for people.
    #[value(alias = "pretty_table")]
    Table,
    /// The API's objects, filtered to the columns, as a JSON array.
    Json,
    /// Tab-separated values, a header row first, for scripts.
    Tsv,
}

/// What a list command prints: the column names and one row of values per object.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The text for `rows`; `headers` false leaves out the header row (table and tsv only).
pub fn render(formatter: Formatter, rows: &Rows, headers: bool) -> String {
    match formatter {
        Formatter::Table => table(rows, headers),
        Formatter::Tsv => tsv(rows, headers),
        Formatter::Json => json(rows),
    }
}

/// A value as one cell: strings bare, null empty, a list of strings as `[a, b]` (how
/// rabbitmqctl prints tags), other lists and objects as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            format!("[{}]", names.join(", "))
        }
        other => other.to_string(),
    }
}

fn tsv(rows: &Rows, headers: bool) -> String {
    // A tab or a newline inside a value would break the row apart; escaped, the row stays one line.
    let escape = |s: String| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
    let mut out = String::new();
    if headers && !rows.rows.is_empty() {
        out.push_str(&rows.columns.join("\t"));
        out.push('\n');
    }
    for row in &rows.rows {
        let cells: Vec<String> = row.iter().map(|v| escape(cell(v))).collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

fn table(rows: &Rows, headers: bool) -> String {
    // Newlines would break the box; they show as the two characters `\n` instead.
    let cells: Vec<Vec<String>> =
        rows.rows.iter().map(|row| row.iter().map(|v| cell(v).replace('\n', "\\n")).collect()).collect();
    let mut widths: Vec<usize> = rows.columns.iter().map(|c| if headers { c.chars().count() } else { 0 }).collect();
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule = |left: char, middle: char, right: char| {
        let segments: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{left}{}{right}\n", segments.join(&middle.to_string()))
    };
    let line = |values: &[String]| {
        let mut s = String::from("│");
        for (value, width) in values.iter().zip(&widths) {
            let pad = width - value.chars().count();
            let _ = write!(s, " {value}{} │", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    if rows.rows.is_empty() && !headers {
        return String::new();
    }
    let mut out = rule('┌', '┬', '┐');
    if headers {
        out.push_str(&line(&rows.columns));
        if !cells.is_empty() {
            out.push_str(&rule('├', '┼', '┤'));
        }
    }
    for row in &cells {
        out.push_str(&line(row));
    }
    out.push_str(&rule('└', '┴', '┘'));
    out
}

fn json(rows: &Rows) -> String {
    // Written by hand so that the keys keep the columns' order (serde_json's map sorts them).
    let objects: Vec<String> = rows
        .rows
        .iter()
        .map(|row| {
            let fields: Vec<String> = rows
                .columns
                .iter()
                .zip(row)
                .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    if objects.is_empty() {
        "[]\n".to_string()
    } else {
        format!("[\n{}\n]\n", objects.join(",\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Rows {
        Rows {
            columns: vec!["name".into(), "messages".into(), "arguments".into()],
            rows: vec![
                vec![json!("orders"), json!(12), json!({"x-max-length": 10})],
                vec![json!("é"), json!(0), json!({})],
            ],
        }
    }

    #[test]
    fn cells_read_like_rabbitmqctl() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("a b")), "a b");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!(1.5)), "1.5");
        assert_eq!(cell(&json!(["administrator", "monitoring"])), "[administrator, monitoring]");
        assert_eq!(cell(&json!([])), "[]");
        assert_eq!(cell(&json!([1, "a"])), r#"[1,"a"]"#);
        assert_eq!(cell(&json!({"max-length": 5})), r#"{"max-length":5}"#);
    }

    #[test]
    fn table_is_boxed_and_aligned_by_characters() {
        let expected = r#"┌────────┬──────────┬─────────────────────┐
│ name   │ messages │ arguments           │
├────────┼──────────┼─────────────────────┤
│ orders │ 12       │ {"x-max-length":10} │
│ é      │ 0        │ {}                  │
└────────┴──────────┴─────────────────────┘
"#;
        assert_eq!(render(Formatter::Table, &sample(), true), expected);
    }

    #[test]
    fn table_without_rows_or_headers() {
        let empty = Rows { columns: vec!["name".into()], rows: vec![] };
        assert_eq!(render(Formatter::Table, &empty, true), "┌──────┐\n│ name │\n└──────┘\n");
        assert_eq!(render(Formatter::Table, &empty, false), "");
        let headless = render(Formatter::Table, &sample(), false);
        assert!(headless.starts_with("┌────────┬────┬"), "{headless}");
        assert!(!headless.contains("name"));
    }

    #[test]
    fn tsv_has_a_header_and_one_line_per_row() {
        assert_eq!(
            render(Formatter::Tsv, &sample(), true),
            "name\tmessages\targuments\norders\t12\t{\"x-max-length\":10}\né\t0\t{}\n"
        );
        assert_eq!(render(Formatter::Tsv, &sample(), false), "orders\t12\t{\"x-max-length\":10}\né\t0\t{}\n");
        let odd = Rows { columns: vec!["name".into()], rows: vec![vec![json!("a\tb\nc")]] };
        assert_eq!(render(Formatter::Tsv, &odd, false), "a\\tb\\nc\n");
        // rabbitmqctl prints no header when there is nothing to list.
        let empty = Rows { columns: vec!["name".into()], rows: vec![] };
        assert_eq!(render(Formatter::Tsv, &empty, true), "");
    }

    #[test]
    fn json_keeps_column_order_and_api_values() {
        let text = render(Formatter::Json, &sample(), true);
        assert_eq!(
            text,
            "[\n{\"name\":\"orders\",\"messages\":12,\"arguments\":{\"x-max-length\":10}},\n\
             {\"name\":\"é\",\"messages\":0,\"arguments\":{}}\n]\n"
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["arguments"]["x-max-length"], 10);
        let empty = Rows { columns: vec!["name".into()], rows: vec![] };
        assert_eq!(render(Formatter::Json, &empty, true), "[]\n");
    }
}
