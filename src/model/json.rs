//! JSON in and out: the document shape used by the CLI and the C API.
//!
//! ```json
//! {
//!   "patient": "MRN-7",
//!   "kind": "Observation",
//!   "fields": {
//!     "status": "final",
//!     "code": {"code": {"system": "loinc", "code": "4548-4", "display": "Hemoglobin A1c"}},
//!     "value": 6.8,
//!     "effective": {"datetime": "2024-03-01T09:30:00Z"},
//!     "note": {"text": "patient reports ...", "labels": ["mental-health"]}
//!   }
//! }
//! ```
//! Plain JSON strings, numbers and booleans are text, decimal and boolean values; a
//! JSON array is a list. Every other type uses an object with one tag key:
//! `text`, `integer`, `decimal` (a string, to stay exact), `boolean`, `date`
//! (`YYYY-MM-DD`), `datetime` (RFC 3339), `code` (`system`, `code`, `display`),
//! `attachment` (`content_type` and `base64`, or `file` where the caller allows it),
//! `list`, `group`; an optional `labels` array beside the tag adds labels to the field.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value as J, json};

use super::{AttachmentRef, Coding, Date, DateTime, Document, Field, Kind, Label, NewDocument, Value};
use crate::error::{Error, Result};

/// Where the bytes of an attachment given in JSON come from.
#[derive(Debug)]
pub enum AttachmentSource {
    /// Bytes given inline as base64.
    Inline(Vec<u8>),
    /// A file path (only honoured by callers that allow it, such as the CLI).
    File(String),
}

/// Stores an attachment found while parsing JSON and returns its reference.
pub type Uploader<'a> = dyn FnMut(&str, AttachmentSource) -> Result<AttachmentRef> + 'a;

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidDocument(msg.into())
}

/// Parses a document from JSON text.
pub fn parse_document_str(s: &str, upload: &mut Uploader<'_>) -> Result<NewDocument> {
    let v: J = serde_json::from_str(s).map_err(|e| Error::json(&e))?;
    parse_document(&v, upload)
}

/// Parses a document from a JSON value.
pub fn parse_document(v: &J, upload: &mut Uploader<'_>) -> Result<NewDocument> {
    let o = v.as_object().ok_or_else(|| bad("a document must be a JSON object"))?;
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "patient" | "kind" | "fields" | "id" | "version" | "created" | "updated" | "author" | "redacted"
        ) {
            return Err(bad(format!("unknown top-level key {:?} (expected patient, kind, fields)", trunc(k))));
        }
    }
    let patient = o.get("patient").and_then(J::as_str).ok_or_else(|| bad("\"patient\" (a string) is required"))?;
    let kind = o.get("kind").and_then(J::as_str).ok_or_else(|| bad("\"kind\" (a string) is required"))?;
    let fields = match o.get("fields") {
        None => Map::new(),
        Some(J::Object(m)) => m.clone(),
        Some(_) => return Err(bad("\"fields\" must be an object")),
    };
    let mut doc = NewDocument { patient: patient.to_string(), kind: Kind::new(kind)?, fields: BTreeMap::new() };
    for (name, fv) in &fields {
        let field = parse_field(fv, upload, 0).map_err(|e| match e {
            Error::InvalidDocument(m) => bad(format!("field {:?}: {m}", trunc(name))),
            other => other,
        })?;
        doc.fields.insert(name.clone(), field);
    }
    doc.validate()?;
    Ok(doc)
}

fn trunc(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_field(v: &J, upload: &mut Uploader<'_>, depth: usize) -> Result<Field> {
    let mut labels = Vec::new();
    if let J::Object(o) = v
        && let Some(ls) = o.get("labels")
    {
        let arr = ls.as_array().ok_or_else(|| bad("\"labels\" must be an array of strings"))?;
        for l in arr {
            labels.push(Label::new(l.as_str().ok_or_else(|| bad("a label must be a string"))?)?);
        }
    }
    Ok(Field { value: parse_value(v, upload, depth)?, labels })
}

/// Parses one value in the tagged JSON form.
pub fn parse_value(v: &J, upload: &mut Uploader<'_>, depth: usize) -> Result<Value> {
    if depth > super::document::limits::DEPTH {
        return Err(bad("values nest too deeply"));
    }
    Ok(match v {
        J::Null => return Err(bad("null is not a value; leave the field out instead")),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            Value::Decimal(n.to_string().parse().map_err(|_| bad("number out of range for an exact decimal"))?)
        }
        J::String(s) => Value::Text(s.clone()),
        J::Array(items) => Value::List(items.iter().map(|x| parse_value(x, upload, depth + 1)).collect::<Result<_>>()?),
        J::Object(o) => {
            let tags: Vec<&String> = o.keys().filter(|k| k.as_str() != "labels").collect();
            if tags.len() != 1 {
                return Err(bad(
                    "an object value needs exactly one type tag: text, integer, decimal, boolean, date, datetime, code, attachment, list or group",
                ));
            }
            let tag = tags[0].as_str();
            let x = &o[tag];
            match tag {
                "text" => Value::Text(x.as_str().ok_or_else(|| bad("\"text\" takes a string"))?.to_string()),
                "integer" => Value::Integer(match x {
                    J::Number(n) => n.as_i64().ok_or_else(|| bad("\"integer\" takes a 64-bit integer"))?,
                    J::String(s) => s.parse().map_err(|_| bad("\"integer\" takes a 64-bit integer"))?,
                    _ => return Err(bad("\"integer\" takes a 64-bit integer")),
                }),
                "decimal" => Value::Decimal(match x {
                    J::String(s) => {
                        s.parse().map_err(|_| bad("\"decimal\" takes a decimal number string such as \"6.80\""))?
                    }
                    J::Number(n) => n.to_string().parse().map_err(|_| bad("decimal out of range"))?,
                    _ => return Err(bad("\"decimal\" takes a decimal number string such as \"6.80\"")),
                }),
                "boolean" => Value::Boolean(x.as_bool().ok_or_else(|| bad("\"boolean\" takes true or false"))?),
                "date" => Value::Date(Date::parse(x.as_str().ok_or_else(|| bad("\"date\" takes a string"))?)?),
                "datetime" => {
                    Value::DateTime(DateTime::parse(x.as_str().ok_or_else(|| bad("\"datetime\" takes a string"))?)?)
                }
                "code" => {
                    let c = x.as_object().ok_or_else(|| bad("\"code\" takes an object with system and code"))?;
                    let s = |k: &str| c.get(k).and_then(J::as_str);
                    let system = s("system").ok_or_else(|| bad("a code needs a \"system\" string"))?;
                    let code = s("code").ok_or_else(|| bad("a code needs a \"code\" string"))?;
                    if system.is_empty() || code.is_empty() {
                        return Err(bad("a code's system and code must not be empty"));
                    }
                    Value::from(Coding::new(system, code, s("display")))
                }
                "attachment" => {
                    let a = x.as_object().ok_or_else(|| bad("\"attachment\" takes an object"))?;
                    let ct = a.get("content_type").and_then(J::as_str).unwrap_or("application/octet-stream");
                    let src = if let Some(b) = a.get("base64").and_then(J::as_str) {
                        AttachmentSource::Inline(
                            base64::engine::general_purpose::STANDARD
                                .decode(b)
                                .map_err(|_| bad("attachment \"base64\" is not valid base64"))?,
                        )
                    } else if let Some(f) = a.get("file").and_then(J::as_str) {
                        AttachmentSource::File(f.to_string())
                    } else {
                        return Err(bad("an attachment needs \"base64\" data or a \"file\" path"));
                    };
                    Value::from(upload(ct, src)?)
                }
                "list" => match x {
                    J::Array(items) => {
                        Value::List(items.iter().map(|i| parse_value(i, upload, depth + 1)).collect::<Result<_>>()?)
                    }
                    _ => return Err(bad("\"list\" takes an array")),
                },
                "group" => match x {
                    J::Object(m) => {
                        let mut g = BTreeMap::new();
                        for (k, i) in m {
                            g.insert(k.clone(), parse_value(i, upload, depth + 1)?);
                        }
                        Value::Group(g)
                    }
                    _ => return Err(bad("\"group\" takes an object")),
                },
                other => return Err(bad(format!("unknown value tag {:?}", trunc(other)))),
            }
        }
    })
}

/// An uploader that refuses attachments (for inputs that may not carry them).
pub fn no_attachments(_: &str, _: AttachmentSource) -> Result<AttachmentRef> {
    Err(bad("attachments are not accepted here"))
}

/// The JSON form of a value.
pub fn value_to_json(v: &Value) -> J {
    match v {
        Value::Text(s) => J::String(s.clone()),
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => json!({ "integer": i }),
        Value::Decimal(d) => json!({ "decimal": d.to_string() }),
        Value::Date(d) => json!({ "date": d.to_string() }),
        Value::DateTime(d) => json!({ "datetime": d.to_string() }),
        Value::Code(c) => {
            let mut m = Map::new();
            m.insert("system".into(), J::String(c.system.clone()));
            m.insert("code".into(), J::String(c.code.clone()));
            if let Some(d) = &c.display {
                m.insert("display".into(), J::String(d.clone()));
            }
            json!({ "code": m })
        }
        Value::Attachment(a) => json!({ "attachment": {
            "id": a.id_hex(), "content_type": a.content_type, "size": a.size,
            "blake3": crate::util::hex(&a.hash),
        }}),
        Value::List(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Group(m) => {
            json!({ "group": m.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect::<Map<_, _>>() })
        }
    }
}

fn field_to_json(f: &Field) -> J {
    let v = value_to_json(&f.value);
    if f.labels.is_empty() {
        return v;
    }
    let mut o = match v {
        J::Object(o) => o,
        J::String(s) => Map::from_iter([("text".to_string(), J::String(s))]),
        J::Bool(b) => Map::from_iter([("boolean".to_string(), J::Bool(b))]),
        J::Array(a) => Map::from_iter([("list".to_string(), J::Array(a))]),
        other => Map::from_iter([("value".to_string(), other)]),
    };
    o.insert("labels".into(), J::Array(f.labels.iter().map(|l| J::String(l.to_string())).collect()));
    J::Object(o)
}

/// The JSON form of a stored document, with redacted fields listed under `redacted`.
pub fn document_to_json(d: &Document) -> J {
    let mut o = Map::new();
    o.insert("id".into(), J::String(d.id.to_string()));
    o.insert("patient".into(), J::String(d.patient.clone()));
    o.insert("kind".into(), J::String(d.kind.to_string()));
    o.insert("version".into(), json!(d.version));
    o.insert("created".into(), J::String(d.created.to_string()));
    o.insert("updated".into(), J::String(d.updated.to_string()));
    o.insert("author".into(), J::String(d.author.clone()));
    o.insert("fields".into(), J::Object(d.fields.iter().map(|(k, f)| (k.clone(), field_to_json(f))).collect()));
    if !d.redacted.is_empty() {
        o.insert(
            "redacted".into(),
            J::Object(
                d.redacted
                    .iter()
                    .map(|(k, ls)| (k.clone(), J::Array(ls.iter().map(|l| J::String(l.to_string())).collect())))
                    .collect(),
            ),
        );
    }
    J::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_all_types() {
        let src = r#"{"patient":"P1","kind":"Observation","fields":{
            "t":"x","n":6.80,"b":true,"i":{"integer":5},"d":{"decimal":"1.10"},
            "date":{"date":"2024-01-02"},"dt":{"datetime":"2024-01-02T03:04:05-05:00"},
            "code":{"code":{"system":"loinc","code":"4548-4"}},
            "l":[1,"a"],"g":{"group":{"a":{"integer":1}}},
            "x":{"text":"secret","labels":["hiv-sti"]}}}"#;
        let d = parse_document_str(src, &mut no_attachments).unwrap();
        assert_eq!(d.fields.len(), 11);
        assert_eq!(d.fields["d"].value, Value::Decimal("1.10".parse().unwrap()));
        assert_eq!(d.fields["x"].labels, vec![Label::hiv_sti()]);
        assert!(matches!(&d.fields["code"].value, Value::Code(c) if c.system == "http://loinc.org"));
    }

    #[test]
    fn errors_are_clear_and_quote_no_values() {
        for bad in [
            r#"[]"#,
            r#"{"kind":"Observation"}"#,
            r#"{"patient":"P","kind":"Obs ervation"}"#,
            r#"{"patient":"P","kind":"X","fields":{"a":{"date":"2024-13-01"}}}"#,
            r#"{"patient":"P","kind":"X","fields":{"a":{"zzz":"SECRETVALUE"}}}"#,
            r#"{"patient":"P","kind":"X","fields":{"a":null}}"#,
            r#"{"patient":"P","kind":"X","fields":{"a":{"integer":"SECRETVALUE"}}}"#,
            "{\"patient\":",
        ] {
            let e = parse_document_str(bad, &mut no_attachments).unwrap_err().to_string();
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
    }
}
