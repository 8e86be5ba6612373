//! Documents: `put`, `update`, `get`, `history`, `chart`, `attachment`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use chartvault::model::json::{AttachmentSource, document_to_json, parse_document};
use chartvault::{AttachmentRef, Document, DocumentId, SessionBatch, Vault};
use serde_json::Value as J;
use zeroize::Zeroizing;

use super::{close, close_after_failed_write, open_vault, open_vault_keeping_secret, parse_id, parse_json, read_input};
use crate::args::{AttachmentArgs, ChartArgs, Format, GetArgs, HistoryArgs, PutArgs, QueryArgs, UpdateArgs};
use crate::error::{CliError, CliResult, io_error};
use crate::output::{self, Table};

/// Streams an attachment named in the JSON into the batch. `file` paths are relative
/// to `base` (the JSON file's folder) or, for standard input, the current folder.
/// Error messages name neither the file nor its content (the field name is added by
/// the parser).
fn upload(
    batch: &mut SessionBatch<'_>,
    base: Option<&Path>,
    content_type: &str,
    src: AttachmentSource,
) -> chartvault::Result<AttachmentRef> {
    match src {
        AttachmentSource::Inline(bytes) => {
            let bytes = Zeroizing::new(bytes);
            batch.put_attachment(content_type, &mut bytes.as_slice())
        }
        AttachmentSource::File(name) => {
            let p = PathBuf::from(&name);
            let path = match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            };
            let mut f = std::fs::File::open(&path)
                .map_err(|e| chartvault::Error::InvalidDocument(format!("cannot open the attachment's file: {e}")))?;
            batch.put_attachment(content_type, &mut f)
        }
    }
}

/// `put`: stores one document, or every document of a JSON array in one commit.
pub fn put(key_file: Option<&Path>, a: PutArgs) -> CliResult<()> {
    let input = read_input(a.file.as_deref())?;
    let json = parse_json(&input)?;
    let docs: Vec<&J> = match &json {
        J::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    if docs.is_empty() {
        return Err(CliError::new("the input is an empty JSON array: nothing to store"));
    }
    let (vault, secret) = open_vault_keeping_secret(&a.vault, key_file, false)?;
    match put_all(&vault, &a, &docs, input.base.as_deref()) {
        Ok(ids) => {
            close(vault)?;
            for id in ids {
                println!("{id}");
            }
            Ok(())
        }
        Err(e) => {
            close_after_failed_write(&a.vault, &secret, vault);
            Err(e)
        }
    }
}

/// Stores `docs` in one batch: nothing is committed unless every one is valid and allowed.
fn put_all(vault: &Vault, a: &PutArgs, docs: &[&J], base: Option<&Path>) -> CliResult<Vec<DocumentId>> {
    let session = a.session.open(vault)?;
    let mut batch = session.batch()?;
    let mut ids = Vec::with_capacity(docs.len());
    let n = docs.len();
    for (i, d) in docs.iter().enumerate() {
        let parsed = {
            let mut up = |ct: &str, src: AttachmentSource| upload(&mut batch, base, ct, src);
            parse_document(d, &mut up)
        };
        let doc = parsed.map_err(|e| with_position(e.into(), i, n))?;
        ids.push(batch.put(&doc).map_err(|e| with_position(e.into(), i, n))?);
    }
    batch.commit()?;
    Ok(ids)
}

fn with_position(e: CliError, i: usize, n: usize) -> CliError {
    if n > 1 { e.context(format!("document {} of {n}", i + 1)) } else { e }
}

/// `update`: writes a new version whose fields are the JSON's fields.
pub fn update(key_file: Option<&Path>, a: UpdateArgs) -> CliResult<()> {
    let id = parse_id(&a.id)?;
    let input = read_input(a.file.as_deref())?;
    let json = parse_json(&input)?;
    if !json.is_object() {
        return Err(CliError::new("invalid document: a document must be a JSON object"));
    }
    let (vault, secret) = open_vault_keeping_secret(&a.vault, key_file, false)?;
    match update_one(&vault, &a, id, json, input.base.as_deref()) {
        Ok(version) => {
            close(vault)?;
            println!("updated {id}: now version {version}");
            Ok(())
        }
        Err(e) => {
            close_after_failed_write(&a.vault, &secret, vault);
            Err(e)
        }
    }
}

/// Writes the new version. Nothing is committed unless the input is valid, the policy
/// allows it, and the JSON does not try to move the document or change its kind.
fn update_one(vault: &Vault, a: &UpdateArgs, id: DocumentId, mut json: J, base: Option<&Path>) -> CliResult<u32> {
    let session = a.session.open(vault)?;
    // The document's patient and kind, from the catalog (no decryption needed).
    let not_found = || CliError::from(chartvault::Error::NotFound { id: id.to_string(), version: None });
    let (slot, kind, _) = vault.store().entry_meta(&id)?.ok_or_else(not_found)?;
    let patient =
        vault.store().read_state().keyring.patient(slot).map(str::to_string).ok_or(chartvault::Error::Erased)?;
    let obj =
        json.as_object_mut().ok_or_else(|| CliError::new("invalid document: a document must be a JSON object"))?;
    let given_patient = obj.insert("patient".into(), J::String(patient.clone()));
    let given_kind = obj.insert("kind".into(), J::String(kind.to_string()));
    let mut batch = session.batch()?;
    let parsed = {
        let mut up = |ct: &str, src: AttachmentSource| upload(&mut batch, base, ct, src);
        parse_document(&json, &mut up)
    };
    let doc = parsed?;
    // The policy decides first (and audits a denial); only then is a mismatch reported,
    // so the answer reveals nothing to a session that may not see the document.
    let version = batch.update(&id, doc.fields)?;
    if given_patient.is_some_and(|p| p != J::String(patient)) {
        return Err(CliError::new(
            "the JSON names another patient than the document's: update cannot move a document (nothing was written)",
        ));
    }
    if given_kind.is_some_and(|k| k != J::String(kind.to_string())) {
        return Err(CliError::new(
            "the JSON names another kind than the document's: update cannot change the kind (nothing was written)",
        ));
    }
    batch.commit()?;
    Ok(version)
}

/// `get`: one document as pretty JSON.
pub fn get(key_file: Option<&Path>, a: GetArgs) -> CliResult<()> {
    let id = parse_id(&a.id)?;
    let vault = open_vault(&a.vault, key_file, false)?;
    let session = a.session.open_with(&vault, &a.break_glass)?;
    let doc = match a.version {
        Some(v) => session.get_version(&id, v)?,
        None => session.get(&id)?,
    };
    drop(session);
    close(vault)?;
    output::print_json(&document_to_json(&doc))?;
    note_redactions(std::slice::from_ref(&doc));
    Ok(())
}

fn note_redactions(docs: &[Document]) {
    let n: usize = docs.iter().map(|d| d.redacted.len()).sum();
    if n > 0 {
        eprintln!(
            "note: {n} field(s) withheld by policy for this role and purpose (listed under \"redacted\", without values)"
        );
    }
}

/// What changed between two versions, by field name only.
fn changes(prev: Option<&Document>, cur: &Document) -> String {
    let Some(prev) = prev else {
        return "created".into();
    };
    let names: BTreeSet<&String> = prev.fields.keys().chain(cur.fields.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        match (prev.fields.get(n), cur.fields.get(n)) {
            (None, Some(_)) => out.push(format!("+{n}")),
            (Some(_), None) if !cur.redacted.contains_key(n) => out.push(format!("-{n}")),
            (Some(a), Some(b)) if a != b => out.push(format!("~{n}")),
            _ => {}
        }
    }
    if out.is_empty() { "no visible change".into() } else { out.join(" ") }
}

/// `history`: every version of a document.
pub fn history(key_file: Option<&Path>, a: HistoryArgs) -> CliResult<()> {
    let id = parse_id(&a.id)?;
    let vault = open_vault(&a.vault, key_file, false)?;
    let session = a.session.open_with(&vault, &a.break_glass)?;
    let versions = session.history(&id)?;
    drop(session);
    close(vault)?;
    match a.format {
        Format::Json => output::print_json(&output::documents_json(&versions))?,
        Format::Table => {
            if let Some(first) = versions.first() {
                println!("document {id}  ({} of patient {}, created {})", first.kind, first.patient, first.created);
            }
            let mut t = Table::new(&["VERSION", "WRITTEN", "AUTHOR", "FIELDS", "CHANGES", "WITHHELD"]);
            for (i, d) in versions.iter().enumerate() {
                let prev = i.checked_sub(1).and_then(|j| versions.get(j));
                t.row(vec![
                    d.version.to_string(),
                    d.updated.to_string(),
                    d.author.clone(),
                    d.fields.len().to_string(),
                    changes(prev, d),
                    if d.redacted.is_empty() {
                        String::new()
                    } else {
                        d.redacted.keys().cloned().collect::<Vec<_>>().join(", ")
                    },
                ]);
            }
            t.print(0);
        }
    }
    Ok(())
}

/// `chart`: the patient's documents this session may see.
pub fn chart(key_file: Option<&Path>, a: ChartArgs) -> CliResult<()> {
    let vault = open_vault(&a.vault, key_file, false)?;
    let session = a.session.open_with(&vault, &a.break_glass)?;
    let docs = session.chart(&a.patient)?;
    drop(session);
    close(vault)?;
    match a.format {
        Format::Json => output::print_json(&output::documents_json(&docs))?,
        Format::Table => {
            if docs.is_empty() {
                eprintln!("no documents of this patient are visible to this session (none stored, or none permitted)");
                return Ok(());
            }
            println!("chart of patient {}: {} document(s) visible to this session", a.patient, docs.len());
            let mut t = Table::new(&["ID", "KIND", "V", "UPDATED", "CONTENT"]);
            for d in &docs {
                t.row(vec![
                    d.id.to_string(),
                    d.kind.to_string(),
                    d.version.to_string(),
                    d.updated.to_string(),
                    output::document_summary(d, 100),
                ]);
            }
            t.print(0);
        }
    }
    note_redactions(&docs);
    Ok(())
}

/// `query`: runs a query in the session and prints a page of results (JSON lines or a table).
pub fn query(key_file: Option<&Path>, a: QueryArgs) -> CliResult<()> {
    let mut q = chartvault::query::parse(&a.query)?;
    if a.limit.is_some() {
        q.limit = a.limit;
    }
    q.cursor = a.cursor.clone();
    let vault = open_vault(&a.vault, key_file, false)?;
    let session = a.session.open_with(&vault, &a.break_glass)?;
    let page = session.query(&q)?;
    drop(session);
    close(vault)?;
    match a.format {
        Format::Json => {
            for d in &page.documents {
                println!("{}", chartvault::model::json::document_to_json(d));
            }
            println!(
                "{}",
                serde_json::json!({"total": page.total, "returned": page.documents.len(), "next_cursor": page.next_cursor})
            );
        }
        Format::Table => {
            println!("{} matching document(s) visible to this session; showing {}", page.total, page.documents.len());
            let mut t = Table::new(&["ID", "PATIENT", "KIND", "V", "CONTENT"]);
            for d in &page.documents {
                t.row(vec![
                    d.id.to_string(),
                    d.patient.clone(),
                    d.kind.to_string(),
                    d.version.to_string(),
                    output::document_summary(d, 90),
                ]);
            }
            t.print(0);
            if let Some(c) = &page.next_cursor {
                println!("more: --cursor {c}");
            }
        }
    }
    note_redactions(&page.documents);
    Ok(())
}

/// `attachment`: streams an attachment to a new owner-only file (or standard output).
pub fn attachment(key_file: Option<&Path>, a: AttachmentArgs) -> CliResult<()> {
    let id = parse_id(&a.id)?;
    let to_stdout = a.out.as_os_str() == "-";
    let vault = open_vault(&a.vault, key_file, false)?;
    let session = a.session.open_with(&vault, &a.break_glass)?;
    let result = if to_stdout {
        let mut out = std::io::stdout().lock();
        session.read_attachment(&id, &a.field, &mut out).map_err(CliError::from).and_then(|n| {
            out.flush().map_err(|e| CliError::new(format!("cannot write standard output: {e}")))?;
            Ok(n)
        })
    } else {
        let mut f = output::create_private_file(&a.out)?;
        let r = session.read_attachment(&id, &a.field, &mut f).map_err(CliError::from).and_then(|n| {
            f.sync_all().map_err(|e| io_error("write", &a.out, &e))?;
            Ok(n)
        });
        if r.is_err() {
            drop(f);
            let _ = std::fs::remove_file(&a.out);
        }
        r
    };
    drop(session);
    let closed = close(vault);
    let n = result?;
    closed?;
    if !to_stdout {
        eprintln!("wrote {n} bytes to {}", a.out.display());
    }
    Ok(())
}
