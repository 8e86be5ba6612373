//! Typed field values.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// An exact decimal number (never a float): `6.80` keeps its scale.
pub type Decimal = rust_decimal::Decimal;

/// A field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Free text.
    Text(String),
    /// A 64-bit signed integer.
    Integer(i64),
    /// An exact decimal.
    Decimal(Decimal),
    /// True or false.
    Boolean(bool),
    /// A calendar date.
    Date(Date),
    /// An instant with its UTC offset.
    DateTime(DateTime),
    /// A coded value from a terminology (ICD-10-CM, LOINC, SNOMED CT, RxNorm, CPT ...).
    ///
    /// Boxed, like [`Value::Attachment`], so that a `Value` stays 32 bytes: documents
    /// are maps of values, and every read moves them. Build one with
    /// `Value::from(Coding::new(..))`.
    Code(Box<Coding>),
    /// A binary attachment stored in chunks beside the document.
    /// Boxed (see [`Value::Code`]); build one with `Value::from(attachment_ref)`.
    Attachment(Box<AttachmentRef>),
    /// An ordered list of values.
    List(Vec<Value>),
    /// A nested group of named values.
    Group(BTreeMap<String, Value>),
}

impl From<Coding> for Value {
    /// A coded value.
    ///
    /// ```
    /// use chartvault::{Coding, Value};
    /// let v = Value::from(Coding::new("loinc", "4548-4", Some("HbA1c")));
    /// assert!(matches!(&v, Value::Code(c) if c.code == "4548-4"));
    /// ```
    fn from(c: Coding) -> Self {
        Value::Code(Box::new(c))
    }
}

impl From<AttachmentRef> for Value {
    /// An attachment value (from `SessionBatch::put_attachment`).
    fn from(a: AttachmentRef) -> Self {
        Value::Attachment(Box::new(a))
    }
}

impl Value {
    /// Short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Integer(_) => "integer",
            Value::Decimal(_) => "decimal",
            Value::Boolean(_) => "boolean",
            Value::Date(_) => "date",
            Value::DateTime(_) => "datetime",
            Value::Code(_) => "code",
            Value::Attachment(_) => "attachment",
            Value::List(_) => "list",
            Value::Group(_) => "group",
        }
    }

    /// Visits this value and every nested value.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Value)) {
        f(self);
        match self {
            Value::List(v) => v.iter().for_each(|x| x.walk(f)),
            Value::Group(m) => m.values().for_each(|x| x.walk(f)),
            _ => {}
        }
    }
}

/// A calendar date (proleptic Gregorian), stored as days since 1970-01-01.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(i32);

const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

impl Date {
    /// Parses `YYYY-MM-DD`.
    ///
    /// ```
    /// let d = chartvault::Date::parse("2024-02-29").unwrap();
    /// assert_eq!(d.to_string(), "2024-02-29");
    /// assert!(chartvault::Date::parse("2023-02-29").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        let d = time::Date::parse(s, &fmt)
            .map_err(|_| Error::InvalidDocument("a date must be a valid YYYY-MM-DD".into()))?;
        Ok(Date(d.to_julian_day() - UNIX_EPOCH_JULIAN))
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> i32 {
        self.0
    }

    /// Builds a date from days since 1970-01-01, if in range.
    pub fn from_days(days: i32) -> Option<Self> {
        time::Date::from_julian_day(days.checked_add(UNIX_EPOCH_JULIAN)?).ok().map(|_| Date(days))
    }

    /// The date stored as `days`, unchecked, as the body codec's serde form reads it
    /// (a stored day count out of `time`'s range displays as invalid, never panics).
    pub(crate) fn from_stored_days(days: i32) -> Self {
        Date(days)
    }

    fn to_time(self) -> Option<time::Date> {
        time::Date::from_julian_day(self.0.checked_add(UNIX_EPOCH_JULIAN)?).ok()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_time() {
            // Four digits after the sign, as `Date::parse` reads them back ("-0554", not "-554").
            Some(d) if d.year() < 0 => write!(f, "-{:04}-{:02}-{:02}", -d.year(), u8::from(d.month()), d.day()),
            Some(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
            None => write!(f, "<invalid date {}>", self.0),
        }
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

/// An instant with the UTC offset it was recorded in; ordered by the instant.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct DateTime {
    micros: i64,
    offset_minutes: i16,
}

impl DateTime {
    /// Parses RFC 3339 (`2024-03-01T09:30:00Z`, `2024-03-01T09:30:00.123-05:00`).
    pub fn parse(s: &str) -> Result<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| Error::InvalidDocument("a datetime must be RFC 3339, e.g. 2024-03-01T09:30:00Z".into()))?;
        let micros = i64::try_from(t.unix_timestamp_nanos() / 1000)
            .map_err(|_| Error::InvalidDocument("datetime out of range".into()))?;
        Ok(DateTime { micros, offset_minutes: t.offset().whole_minutes() })
    }

    /// The current time in UTC.
    pub fn now() -> Self {
        DateTime::from_unix_micros(crate::util::now_micros())
    }

    /// Builds a UTC datetime from Unix microseconds.
    pub fn from_unix_micros(micros: i64) -> Self {
        DateTime { micros, offset_minutes: 0 }
    }

    /// The datetime stored as `micros` and `offset_minutes`, unchecked, as the body
    /// codec's serde form reads it.
    pub(crate) fn from_stored(micros: i64, offset_minutes: i16) -> Self {
        DateTime { micros, offset_minutes }
    }

    /// Unix microseconds of the instant.
    pub fn unix_micros(self) -> i64 {
        self.micros
    }

    /// The date part in UTC.
    pub fn utc_date(self) -> Date {
        Date(self.micros.div_euclid(86_400_000_000) as i32)
    }
}

impl PartialEq for DateTime {
    fn eq(&self, o: &Self) -> bool {
        self.micros == o.micros
    }
}
impl Eq for DateTime {}
impl PartialOrd for DateTime {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for DateTime {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.micros.cmp(&o.micros)
    }
}
impl std::hash::Hash for DateTime {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.micros.hash(h)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off =
            time::UtcOffset::from_whole_seconds(i32::from(self.offset_minutes) * 60).unwrap_or(time::UtcOffset::UTC);
        // Build the local wall-clock time directly: an instant parsed with an offset
        // (9999-12-31T23:59:59-23:59) can lie outside the years `time` represents in UTC
        // while its local time is inside them.
        let local = i128::from(self.micros) * 1000 + i128::from(off.whole_seconds()) * 1_000_000_000;
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(local).map(|t| t.replace_offset(off));
        match t.ok().and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()) {
            Some(s) => f.write_str(&s),
            None => write!(f, "<invalid datetime {}>", self.micros),
        }
    }
}

impl fmt::Debug for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DateTime({self})")
    }
}

/// A coded value: terminology system, code, and optional display text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Coding {
    /// The code system URI (short aliases such as `loinc` are expanded on input).
    pub system: String,
    /// The code.
    pub code: String,
    /// Human-readable display text.
    pub display: Option<String>,
}

/// Short names accepted for common code systems, and the URIs they stand for.
pub const CODE_SYSTEM_ALIASES: &[(&str, &str)] = &[
    ("loinc", "http://loinc.org"),
    ("snomed", "http://snomed.info/sct"),
    ("icd10cm", "http://hl7.org/fhir/sid/icd-10-cm"),
    ("icd10", "http://hl7.org/fhir/sid/icd-10"),
    ("rxnorm", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ("cpt", "http://www.ama-assn.org/go/cpt"),
    ("cvx", "http://hl7.org/fhir/sid/cvx"),
];

impl Coding {
    /// Builds a coding, expanding a short system alias (`loinc`, `snomed`, `icd10cm`,
    /// `rxnorm`, `cpt`, `cvx`, `icd10`) to its URI.
    ///
    /// ```
    /// let c = chartvault::Coding::new("loinc", "4548-4", Some("Hemoglobin A1c"));
    /// assert_eq!(c.system, "http://loinc.org");
    /// ```
    pub fn new(system: &str, code: &str, display: Option<&str>) -> Self {
        Coding {
            system: expand_system(system).to_string(),
            code: code.to_string(),
            display: display.map(str::to_string),
        }
    }
}

/// Expands a code-system alias; other strings are returned unchanged.
pub fn expand_system(s: &str) -> &str {
    CODE_SYSTEM_ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(s)).map(|(_, uri)| *uri).unwrap_or(s)
}

/// A reference to a binary attachment stored as encrypted chunk frames.
///
/// The attachment's data key lives only inside this value, which is itself sealed in
/// its field's label group, so reading an attachment needs read access to its field,
/// and erasing the patient makes the attachment unreadable too.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentRef {
    /// Random attachment id.
    pub id: [u8; 16],
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the content.
    pub hash: [u8; 32],
    /// Number of chunk frames.
    pub chunks: u32,
    /// File offset of the first chunk frame.
    pub first_offset: u64,
    /// Data key of the chunks.
    pub(crate) key: [u8; 32],
}

impl fmt::Debug for AttachmentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentRef")
            .field("id", &crate::util::hex(&self.id))
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AttachmentRef {
    /// Hex form of the attachment id.
    pub fn id_hex(&self) -> String {
        crate::util::hex(&self.id)
    }
}
