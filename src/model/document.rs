//! Documents: one clinical record (a version of it) for one patient.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{DateTime, Label, Value};
use crate::error::{Error, Result};

/// A random 128-bit document id, shown as 32 hex digits (also in JSON; binary
/// encodings carry the 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId(pub [u8; 16]);

impl Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&self.to_string()) } else { self.0.serialize(s) }
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            DocumentId::parse(&s).map_err(|_| serde::de::Error::custom("a document id is 32 hexadecimal digits"))
        } else {
            <[u8; 16]>::deserialize(d).map(DocumentId)
        }
    }
}

impl DocumentId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        DocumentId(b)
    }

    /// Parses 32 hex digits.
    pub fn parse(s: &str) -> Result<Self> {
        crate::util::unhex::<16>(s.trim())
            .map(DocumentId)
            .ok_or_else(|| Error::InvalidArgument("a document id is 32 hexadecimal digits".into()))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::util::hex(&self.0))
    }
}
impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}
impl std::str::FromStr for DocumentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DocumentId::parse(s)
    }
}

/// The kind of a document: a FHIR-like resource type or a custom kind.
///
/// A kind is 1-64 ASCII letters, digits, `_` or `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kind(std::sync::Arc<str>);

macro_rules! kinds {
    ($($(#[$doc:meta])* $konst:ident = $name:literal;)*) => {
        impl Kind { $( $(#[$doc])* pub const $konst: &'static str = $name; )* }
        /// The built-in kinds.
        pub const BUILTIN_KINDS: &[&str] = &[$($name),*];
    };
}

kinds! {
    /// Demographics of a patient.
    PATIENT = "Patient";
    /// A measurement or lab result.
    OBSERVATION = "Observation";
    /// A problem or diagnosis.
    CONDITION = "Condition";
    /// A prescription.
    MEDICATION_REQUEST = "MedicationRequest";
    /// An allergy or intolerance.
    ALLERGY_INTOLERANCE = "AllergyIntolerance";
    /// A visit.
    ENCOUNTER = "Encounter";
    /// A report of diagnostic results.
    DIAGNOSTIC_REPORT = "DiagnosticReport";
    /// An imaging study.
    IMAGING_STUDY = "ImagingStudy";
    /// A procedure.
    PROCEDURE = "Procedure";
    /// An immunization.
    IMMUNIZATION = "Immunization";
    /// A free-text clinical note.
    CLINICAL_NOTE = "ClinicalNote";
    /// Psychotherapy notes (45 CFR 164.501), kept apart from the rest of the record.
    PSYCHOTHERAPY_NOTE = "PsychotherapyNote";
    /// A document such as a scanned PDF.
    DOCUMENT_REFERENCE = "DocumentReference";
    /// Insurance coverage.
    COVERAGE = "Coverage";
    /// A claim or bill.
    CLAIM = "Claim";
    /// A patient's consent or restriction.
    CONSENT = "Consent";
}

impl Kind {
    /// Validates and builds a kind.
    pub fn new(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 64
            && b[0].is_ascii_alphabetic()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
        if ok {
            Ok(Kind(std::sync::Arc::from(s)))
        } else {
            Err(Error::InvalidDocument(
                "a kind is 1-64 ASCII letters, digits, '_' or '-', starting with a letter".into(),
            ))
        }
    }

    /// The kind's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for Kind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Kind::new(&s)
    }
}
impl From<Kind> for String {
    fn from(k: Kind) -> String {
        k.0.to_string()
    }
}

/// A named field: its value and any labels the document adds beyond the schema's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The value.
    pub value: Value,
    /// Extra labels for this field (FHIR `meta.security` style); the schema's label applies too.
    pub labels: Vec<Label>,
}

impl From<Value> for Field {
    fn from(value: Value) -> Self {
        Field { value, labels: Vec::new() }
    }
}

/// A document to store: the caller supplies patient, kind and fields; the vault
/// assigns id, version, times and author.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    /// The patient's identifier in the application (an MRN, for example).
    pub patient: String,
    /// The document kind.
    pub kind: Kind,
    /// Named fields.
    pub fields: BTreeMap<String, Field>,
}

impl NewDocument {
    /// Starts a document for `patient` of kind `kind`.
    ///
    /// ```
    /// use chartvault::{NewDocument, Value, Coding};
    /// let doc = NewDocument::new("MRN-7", "Observation").unwrap()
    ///     .with("code", Value::from(Coding::new("loinc", "4548-4", Some("HbA1c"))))
    ///     .with("value", Value::Decimal("6.8".parse().unwrap()));
    /// assert_eq!(doc.fields.len(), 2);
    /// ```
    pub fn new(patient: &str, kind: &str) -> Result<Self> {
        Ok(NewDocument { patient: patient.to_string(), kind: Kind::new(kind)?, fields: BTreeMap::new() })
    }

    /// Adds a field.
    pub fn with(mut self, name: &str, value: Value) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    /// Adds a field with extra labels.
    pub fn with_labeled(mut self, name: &str, value: Value, labels: Vec<Label>) -> Self {
        self.fields.insert(name.to_string(), Field { value, labels });
        self
    }
}

/// A stored document version as a session sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Document id (the same for every version).
    pub id: DocumentId,
    /// The patient's identifier.
    pub patient: String,
    /// The document kind.
    pub kind: Kind,
    /// Version number, starting at 1.
    pub version: u32,
    /// When version 1 was written.
    pub created: DateTime,
    /// When this version was written.
    pub updated: DateTime,
    /// Who wrote this version (user id).
    pub author: String,
    /// Fields this session may read.
    pub fields: BTreeMap<String, Field>,
    /// Fields withheld from this session: name -> the labels that withheld it.
    pub redacted: BTreeMap<String, Vec<Label>>,
}

impl Document {
    /// The value of field `name`, if present and readable.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).map(|f| &f.value)
    }
}

/// Limits on documents, checked on every write.
pub mod limits {
    /// Longest patient identifier, in bytes.
    pub const PATIENT_ID: usize = 128;
    /// Longest field name, in bytes.
    pub const FIELD_NAME: usize = 128;
    /// Most fields in one document.
    pub const FIELDS: usize = 4096;
    /// Largest encoded body of one label group.
    pub const GROUP_BYTES: usize = 8 * 1024 * 1024;
    /// Deepest nesting of lists and groups.
    pub const DEPTH: usize = 32;
}

impl NewDocument {
    /// Checks sizes, names and nesting.
    pub fn validate(&self) -> Result<()> {
        if self.patient.is_empty() || self.patient.len() > limits::PATIENT_ID {
            return Err(Error::InvalidDocument(format!(
                "the patient identifier must be 1-{} bytes",
                limits::PATIENT_ID
            )));
        }
        if self.fields.len() > limits::FIELDS {
            return Err(Error::InvalidDocument(format!("more than {} fields", limits::FIELDS)));
        }
        for (name, f) in &self.fields {
            validate_field_name(name)?;
            check_depth(&f.value, 0)?;
        }
        Ok(())
    }
}

/// Checks a field name: 1-128 bytes of letters, digits, `_`, `-` or `.`.
pub fn validate_field_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= limits::FIELD_NAME
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidDocument("a field name is 1-128 ASCII letters, digits, '_', '-' or '.'".into()))
    }
}

fn check_depth(v: &Value, depth: usize) -> Result<()> {
    if depth > limits::DEPTH {
        return Err(Error::InvalidDocument(format!("values nest deeper than {}", limits::DEPTH)));
    }
    match v {
        Value::List(items) => items.iter().try_for_each(|x| check_depth(x, depth + 1)),
        Value::Group(m) => m.iter().try_for_each(|(k, x)| {
            validate_field_name(k)?;
            check_depth(x, depth + 1)
        }),
        _ => Ok(()),
    }
}
