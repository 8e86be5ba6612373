//! The envelope of a document version: what a reader needs before it decrypts any
//! field value (patient slot, kind, times, author, and each label group's labels, key
//! generations and field names). Sealed under the vault's meta key (docs/FORMAT.md
//! §10.2).
//!
//! The envelope has its own hand-written encoding (version byte 3): LEB128 varints,
//! and names, labels and kinds as one-byte codes of the static dictionaries in
//! [`super::names`] where they are listed, literal strings where they are not. It is
//! decoded on every read, so it is built to be small and quick to parse.
//!
//! ```
//! use chartvault::format::envelope::{self, Envelope, GroupMeta};
//! use chartvault::Label;
//! let env = Envelope {
//!     patient_slot: 7,
//!     kind: "Observation".into(),
//!     created_us: 1_700_000_000_000_000,
//!     updated_us: 1_700_000_000_000_250,
//!     author: "dr.who".into(),
//!     groups: vec![GroupMeta {
//!         labels: vec![Label::normal()],
//!         generations: vec![1],
//!         fields: vec!["code".into(), "phone".into()],
//!     }],
//! };
//! let bytes = envelope::encode(&env);
//! assert_eq!(envelope::decode(&bytes, 0).unwrap(), env);
//! ```

use zeroize::Zeroizing;

use super::names::{self, Table};
use super::wire::{Reader, put_bytes, put_iv, put_uv};
use crate::error::{Error, Result};
use crate::model::Label;
use crate::model::document::limits;

/// Version byte of the envelope encoding.
pub const ENVELOPE_VERSION: u8 = 3;

/// Metadata of one label group, kept in the envelope so a reader can show redaction
/// markers (field names and labels) for groups it may not decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    /// The labels protecting the group (sorted).
    pub labels: Vec<Label>,
    /// The key generation of each label, in the same order.
    pub generations: Vec<u32>,
    /// Names of the fields in the group.
    pub fields: Vec<String>,
}

/// The envelope of a document version, sealed under the vault's meta key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The patient's record number in the keyring.
    pub patient_slot: u32,
    /// The document kind.
    pub kind: String,
    /// Creation time of version 1, Unix microseconds.
    pub created_us: i64,
    /// Time of this version, Unix microseconds.
    pub updated_us: i64,
    /// Author (user id) of this version.
    pub author: String,
    /// The label groups, in the order their ciphertexts follow.
    pub groups: Vec<GroupMeta>,
}

/// Most label groups in one envelope (a document has at most
/// [`limits::FIELDS`] fields, each in exactly one group).
const MAX_GROUPS: usize = limits::FIELDS;

fn put_token(out: &mut Vec<u8>, table: &Table, s: &str) {
    match table.code(s) {
        Some(c) => out.push(c),
        None => {
            out.push(0);
            put_bytes(out, s.as_bytes());
        }
    }
}

fn token<'a>(r: &mut Reader<'a>, table: &Table) -> Option<&'a str> {
    match r.uv()? {
        0 => r.str(),
        c => table.entry(c),
    }
}

/// A count that cannot exceed the bytes left (every counted item takes at least one
/// byte), so a hostile count never makes a large allocation.
fn count(r: &mut Reader<'_>, max: usize) -> Option<usize> {
    r.usize().filter(|n| *n <= max && *n <= r.remaining())
}

/// Encodes an envelope (version byte included) into a zeroizing buffer.
pub fn encode(env: &Envelope) -> Zeroizing<Vec<u8>> {
    let names: usize = env.groups.iter().flat_map(|g| &g.fields).map(|f| f.len() + 2).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(48 + env.author.len() + names + 8 * env.groups.len()));
    out.push(ENVELOPE_VERSION);
    put_uv(&mut out, u64::from(env.patient_slot));
    put_token(&mut out, &names::KIND_TABLE, &env.kind);
    put_iv(&mut out, env.created_us);
    put_iv(&mut out, env.updated_us);
    put_bytes(&mut out, env.author.as_bytes());
    put_uv(&mut out, env.groups.len() as u64);
    for g in &env.groups {
        put_uv(&mut out, g.labels.len() as u64);
        for (i, l) in g.labels.iter().enumerate() {
            put_token(&mut out, &names::LABEL_TABLE, l.as_str());
            put_uv(&mut out, u64::from(g.generations.get(i).copied().unwrap_or(1)));
        }
        put_uv(&mut out, g.fields.len() as u64);
        for f in &g.fields {
            put_token(&mut out, &names::FIELDS, f);
        }
    }
    out
}

/// Decodes an envelope written by [`encode`]; `offset` names the frame in errors.
///
/// Rejects (as an integrity error) anything malformed: a bad varint, a code outside
/// its dictionary, an invalid label, a field name longer than
/// [`limits::FIELD_NAME`], a count larger than the bytes left, trailing bytes.
pub fn decode(b: &[u8], offset: u64) -> Result<Envelope> {
    decode_view(b, offset).map(|v| v.to_envelope())
}

/// A decoded envelope that borrows its strings from the plaintext it was decoded
/// from (or from the static dictionaries): the read path decodes one per document
/// read, and allocates a field name only when it becomes a key of the document.
///
/// The groups' labels, generations and field names are kept in three flat lists;
/// [`EnvelopeView::group`] slices out one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeView<'a> {
    /// The patient's record number in the keyring.
    pub patient_slot: u32,
    /// The document kind.
    pub kind: &'a str,
    /// Creation time of version 1, Unix microseconds.
    pub created_us: i64,
    /// Time of this version, Unix microseconds.
    pub updated_us: i64,
    /// Author (user id) of this version.
    pub author: &'a str,
    /// Every group's labels, group after group.
    labels: Vec<Label>,
    /// Every group's label key generations, parallel to `labels`.
    generations: Vec<u32>,
    /// Every group's field names, group after group.
    fields: Vec<&'a str>,
    /// Per group: where its labels and its fields end in the flat lists.
    ends: Vec<(usize, usize)>,
}

/// One label group of an [`EnvelopeView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView<'v, 'a> {
    /// The labels protecting the group (sorted).
    pub labels: &'v [Label],
    /// The key generation of each label, in the same order.
    pub generations: &'v [u32],
    /// Names of the fields in the group.
    pub fields: &'v [&'a str],
    /// Position of the group's first field among all the envelope's fields.
    pub first_field: usize,
}

impl<'a> EnvelopeView<'a> {
    /// Number of label groups.
    pub fn group_count(&self) -> usize {
        self.ends.len()
    }

    /// Label group `i`, if there is one.
    pub fn group(&self, i: usize) -> Option<GroupView<'_, 'a>> {
        let (l_end, f_end) = *self.ends.get(i)?;
        let (l_start, f_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        Some(GroupView {
            labels: &self.labels[l_start..l_end],
            generations: &self.generations[l_start..l_end],
            fields: &self.fields[f_start..f_end],
            first_field: f_start,
        })
    }

    /// The groups, in the order their ciphertexts follow.
    pub fn groups(&self) -> impl Iterator<Item = GroupView<'_, 'a>> + '_ {
        (0..self.ends.len()).filter_map(|i| self.group(i))
    }

    /// Every field name, group after group.
    pub fn field_names(&self) -> &[&'a str] {
        &self.fields
    }

    /// The owned form.
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            patient_slot: self.patient_slot,
            kind: self.kind.to_string(),
            created_us: self.created_us,
            updated_us: self.updated_us,
            author: self.author.to_string(),
            groups: self
                .groups()
                .map(|g| GroupMeta {
                    labels: g.labels.to_vec(),
                    generations: g.generations.to_vec(),
                    fields: g.fields.iter().map(|f| f.to_string()).collect(),
                })
                .collect(),
        }
    }
}

/// [`decode`] without copying: the strings of the result borrow from `b`.
pub fn decode_view(b: &[u8], offset: u64) -> Result<EnvelopeView<'_>> {
    match b.split_first() {
        Some((&ENVELOPE_VERSION, rest)) => {
            decode_body(rest).ok_or(Error::Integrity { what: "document envelope", offset })
        }
        Some((v, _)) => Err(Error::UnsupportedVersion { found: u16::from(*v), supported: u16::from(ENVELOPE_VERSION) }),
        None => Err(Error::Integrity { what: "document envelope", offset }),
    }
}

fn decode_body(b: &[u8]) -> Option<EnvelopeView<'_>> {
    let mut r = Reader::new(b);
    let patient_slot = r.u32v()?;
    let kind = token(&mut r, &names::KIND_TABLE)?;
    let created_us = r.iv()?;
    let updated_us = r.iv()?;
    let author = r.str()?;
    let n = count(&mut r, MAX_GROUPS)?;
    let mut ends = Vec::with_capacity(n);
    // Most documents have a handful of groups of one or two labels and a dozen fields.
    let mut labels = Vec::with_capacity(2 * n);
    let mut generations = Vec::with_capacity(2 * n);
    let mut fields = Vec::with_capacity(4 * n);
    for _ in 0..n {
        let m = count(&mut r, limits::FIELDS)?;
        for _ in 0..m {
            labels.push(Label::new(token(&mut r, &names::LABEL_TABLE)?).ok()?);
            generations.push(r.u32v()?);
        }
        let k = count(&mut r, limits::FIELDS)?;
        for _ in 0..k {
            let f = token(&mut r, &names::FIELDS)?;
            if f.is_empty() || f.len() > limits::FIELD_NAME {
                return None;
            }
            fields.push(f);
        }
        ends.push((labels.len(), fields.len()));
    }
    r.done().then_some(EnvelopeView {
        patient_slot,
        kind,
        created_us,
        updated_us,
        author,
        labels,
        generations,
        fields,
        ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            patient_slot: 300,
            kind: "Observation".into(),
            created_us: 1_700_000_000_000_000,
            updated_us: 1_700_000_000_000_005,
            author: "dr.a".into(),
            groups: vec![
                GroupMeta {
                    labels: vec![Label::demographics(), Label::normal()],
                    generations: vec![1, 2],
                    fields: vec!["name".into(), "phone".into()],
                },
                GroupMeta {
                    labels: vec![Label::new("site-x").unwrap()],
                    generations: vec![1],
                    fields: vec!["code".into()],
                },
            ],
        }
    }

    /// The envelope vector of docs/FORMAT.md §18.
    #[test]
    fn format_md_envelope_vector() {
        let env = sample();
        let b = encode(&env);
        assert_eq!(decode(&b, 0).unwrap(), env);
        let expect: &[u8] = &[
            3, 0xac, 0x02, 2, 0x80, 0x80, 0xf2, 0x81, 0x83, 0x89, 0x85, 0x06, 0x8a, 0x80, 0xf2, 0x81, 0x83, 0x89, 0x85,
            0x06, 4, b'd', b'r', b'.', b'a', 2, // head
            2, 4, 1, 1, 2, 2, 23, 0, 5, b'p', b'h', b'o', b'n', b'e', // group 0
            1, 0, 6, b's', b'i', b't', b'e', b'-', b'x', 1, 1, 1, // group 1
        ];
        assert_eq!(&b[..], expect);
    }

    #[test]
    fn the_view_borrows_the_same_groups() {
        let env = sample();
        let b = encode(&env);
        let v = decode_view(&b, 0).unwrap();
        assert_eq!((v.patient_slot, v.kind, v.author), (300, "Observation", "dr.a"));
        assert_eq!(v.group_count(), 2);
        assert_eq!(v.field_names(), &["name", "phone", "code"]);
        for (i, (g, want)) in v.groups().zip(&env.groups).enumerate() {
            assert_eq!(g.labels, &want.labels[..], "group {i}");
            assert_eq!(g.generations, &want.generations[..]);
            assert_eq!(g.fields, &want.fields.iter().map(String::as_str).collect::<Vec<_>>()[..]);
        }
        assert_eq!(v.group(1).unwrap().first_field, 2);
        assert!(v.group(2).is_none());
        assert_eq!(v.to_envelope(), env);
    }

    #[test]
    fn rejects_every_truncation_and_damage_without_panicking() {
        let b = encode(&sample());
        for cut in 0..b.len() {
            assert!(decode(&b[..cut], 0).is_err(), "cut at {cut}");
        }
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(decode(&longer, 0).is_err());
        for i in 0..b.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut d = b.to_vec();
                d[i] ^= x;
                let _ = decode(&d, 0);
            }
        }
        let mut v = b.to_vec();
        v[0] = 2;
        assert!(matches!(decode(&v, 0), Err(Error::UnsupportedVersion { found: 2, .. })));
        // A code outside the dictionary, an invalid label, a huge count.
        assert!(decode(&[3, 0, 0x7f, 0, 0, 0, 0], 0).is_err());
        assert!(decode(&[3, 0, 2, 0, 0, 0, 1, 1, 0, 2, b'A', b'B', 1, 0], 0).is_err());
        assert!(decode(&[3, 0, 2, 0, 0, 0, 0xff, 0xff, 0x03], 0).is_err());
    }
}
