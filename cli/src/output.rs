//! Printing: JSON, aligned tables for people, short summaries of documents, and
//! output files created with owner-only permissions.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use chartvault::model::json::document_to_json;
use chartvault::{Document, Value};
use clap::ValueEnum;
use serde_json::Value as J;

use crate::error::{CliError, CliResult, io_error};

/// Output format of listings and reports.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
}

/// Prints `v` as pretty JSON on standard output.
pub fn print_json(v: &J) -> CliResult<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

/// Prints the result of `serde_json::to_value` (a report) as pretty JSON.
pub fn print_value(v: Result<J, serde_json::Error>) -> CliResult<()> {
    print_json(&v.map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?)
}

/// A table of text cells, printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table { headers: headers.iter().map(|h| (*h).to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row (missing cells are blank, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells.into_iter().map(|c| c.replace(['\n', '\r', '\t'], " ")).collect());
    }

    /// The table as text, each line indented by `indent` spaces.
    pub fn render(&self, indent: usize) -> String {
        let width = |s: &str| s.chars().count();
        let mut w: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(width(c));
            }
        }
        let pad = " ".repeat(indent);
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut l = pad.clone();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<0$}  ", w[i]);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&self.headers, &mut out);
        let rule: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
        line(&rule, &mut out);
        for r in &self.rows {
            line(r, &mut out);
        }
        out
    }

    /// Prints the table on standard output.
    pub fn print(&self, indent: usize) {
        print!("{}", self.render(indent));
    }
}

/// Shortens `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A one-line rendering of a value for tables.
pub fn value_summary(v: &Value) -> String {
    match v {
        Value::Text(s) => format!("\"{}\"", truncate(s, 48)),
        Value::Integer(i) => i.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Date(d) => d.to_string(),
        Value::DateTime(d) => d.to_string(),
        Value::Code(c) => match &c.display {
            Some(d) => format!("{} ({})", c.code, truncate(d, 32)),
            None => c.code.clone(),
        },
        Value::Attachment(a) => format!("[attachment {}, {} bytes]", a.content_type, a.size),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().take(3).map(value_summary).collect();
            let more = if items.len() > 3 { format!(", +{}", items.len() - 3) } else { String::new() };
            format!("[{}{more}]", parts.join(", "))
        }
        Value::Group(m) => {
            let parts: Vec<String> = m.iter().take(4).map(|(k, v)| format!("{k}={}", value_summary(v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// Fields shown first in summaries, most telling first.
const SUMMARY_ORDER: &[&str] =
    &["name", "code", "value", "unit", "text", "clinicalStatus", "status", "effective", "onset", "date", "authored"];

/// A one-line summary of a document's fields: the most telling ones first, then
/// redaction markers (name and label, never a value), then the rest.
pub fn document_summary(d: &Document, max: usize) -> String {
    let rank = |k: &str| SUMMARY_ORDER.iter().position(|x| *x == k).unwrap_or(SUMMARY_ORDER.len());
    let mut fields: Vec<(&String, &chartvault::Field)> = d.fields.iter().collect();
    fields.sort_by_key(|(k, _)| rank(k));
    let shown = |(k, f): &(&String, &chartvault::Field)| format!("{k}: {}", value_summary(&f.value));
    let (first, rest): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(k, _)| rank(k) < SUMMARY_ORDER.len());
    let mut parts: Vec<String> = first.iter().map(shown).collect();
    for (k, labels) in &d.redacted {
        let ls: Vec<&str> = labels.iter().map(|l| l.as_str()).collect();
        parts.push(format!("{k}: [REDACTED: {}]", ls.join("+")));
    }
    parts.extend(rest.iter().map(shown));
    truncate(&parts.join("; "), max)
}

/// Prints a document in a readable multi-line form (used by the demo).
pub fn print_document_fields(d: &Document, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, f) in &d.fields {
        println!("{pad}{k:<14} {}", value_summary(&f.value));
    }
    for (k, labels) in &d.redacted {
        let ls: Vec<&str> = labels.iter().map(|l| l.as_str()).collect();
        println!("{pad}{k:<14} [REDACTED: needs label {}]", ls.join(" + "));
    }
}

/// The documents as a JSON array.
pub fn documents_json(docs: &[Document]) -> J {
    J::Array(docs.iter().map(document_to_json).collect())
}

/// Creates a new output file readable only by its owner; refuses to overwrite.
pub fn create_private_file(path: &Path) -> CliResult<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::new(format!("{} already exists; choose another file (it is not overwritten)", path.display()))
        } else {
            io_error("create", path, &e)
        }
    })
}

/// Writes `text` to a new owner-only file.
pub fn write_private_file(path: &Path, text: &str) -> CliResult<()> {
    let mut f = create_private_file(path)?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io_error("write", path, &e))
}

/// Human-readable size.
pub fn human_size(n: u64) -> String {
    if n < 10 * 1024 {
        format!("{n} bytes")
    } else if n < 10 * 1024 * 1024 {
        format!("{:.1} KiB ({n} bytes)", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB ({n} bytes)", n as f64 / (1024.0 * 1024.0))
    }
}
