//! The codec of what goes *inside* the AEAD: document envelopes, label-group bodies
//! and index terms.
//!
//! These use `postcard` (a stable, documented wire format with a maintained
//! implementation) behind a one-byte format version, isolated in this module so the
//! codec can change without touching the frame format.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::value::Decimal;
use crate::model::{Field, Label};

/// Version byte of the body codec.
pub const BODY_VERSION: u8 = 1;

pub use super::envelope::{Envelope, GroupMeta};

/// A typed, ordered key for an index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IndexKey {
    /// A coded value: (system URI, code).
    Code(String, String),
    /// Text (exact match).
    Text(String),
    /// An integer.
    Integer(i64),
    /// An exact decimal.
    Decimal(Decimal),
    /// A date, days since 1970-01-01.
    Date(i32),
    /// A datetime, Unix microseconds.
    DateTime(i64),
    /// A boolean.
    Boolean(bool),
}

/// One indexed value of a document version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexTerm {
    /// The field name.
    pub field: String,
    /// The labels of the field (a query needs all of them to filter on it).
    pub labels: Vec<Label>,
    /// The value.
    pub key: IndexKey,
}

/// Encodes a value with the version byte.
///
/// The buffer is allocated once at the exact size (a size pass first), so no partly
/// written copy of the plaintext is left behind in memory freed by a reallocation.
pub fn encode<T: Serialize>(v: &T) -> Zeroizing<Vec<u8>> {
    // Serializing into memory cannot fail for this crate's types; an impossible error
    // yields an empty body, which every decoder rejects.
    let size = postcard::experimental::serialized_size(v).unwrap_or(0);
    let mut out = Vec::with_capacity(1 + size);
    out.push(BODY_VERSION);
    let out = postcard::to_extend(v, out).unwrap_or_default();
    Zeroizing::new(out)
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(b: &[u8], what: &'static str, offset: u64) -> Result<T> {
    match b.split_first() {
        Some((&BODY_VERSION, rest)) => postcard::from_bytes(rest).map_err(|_| Error::Integrity { what, offset }),
        Some((v, _)) => Err(Error::UnsupportedVersion { found: u16::from(*v), supported: u16::from(BODY_VERSION) }),
        None => Err(Error::Integrity { what, offset }),
    }
}

/// A decoded group body: the fields of one label group, in the order of the names in
/// its [`GroupMeta::fields`] (the names are in the envelope and bound into the group's
/// AAD, so they are not stored twice).
pub type GroupBody = Vec<Field>;

/// Version byte of a label-group body (file format version 3): each field is its value
/// and its own labels as positions in the group's label list.
pub const GROUP_BODY_VERSION: u8 = 3;

/// The stored form of one group: `(value, own label positions)` per field.
struct GroupOut<'a> {
    fields: &'a [&'a Field],
    labels: &'a [Label],
}

struct OwnLabels<'a> {
    own: &'a [Label],
    group: &'a [Label],
}

impl Serialize for GroupOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.fields.iter().map(|f| (&f.value, OwnLabels { own: &f.labels, group: self.labels })))
    }
}

impl Serialize for OwnLabels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.own.len()))?;
        for l in self.own {
            let i = self.group.iter().position(|g| g == l).ok_or_else(|| S::Error::custom("label not in group"))?;
            seq.serialize_element(&(i as u32))?;
        }
        seq.end()
    }
}

/// Encodes the fields of one label group whose (sorted) label list is `group_labels`:
/// `GROUP_BODY_VERSION || postcard(Vec<(Value, Vec<u32>)>)`, where the `u32`s are the
/// positions of the field's own labels in `group_labels` (so a label's name is stored
/// once, in the envelope). Allocated once at the exact size.
///
/// Fails only if a field has a label its group lacks (a writer bug, never user input).
pub fn encode_group(fields: &[&Field], group_labels: &[Label]) -> Result<Zeroizing<Vec<u8>>> {
    let v = GroupOut { fields, labels: group_labels };
    let bug = || Error::InvalidArgument("a field label is missing from its label group".into());
    let size = postcard::experimental::serialized_size(&v).map_err(|_| bug())?;
    let mut out = Vec::with_capacity(1 + size);
    out.push(GROUP_BODY_VERSION);
    postcard::to_extend(&v, out).map(Zeroizing::new).map_err(|_| bug())
}

/// Decodes a group body written by [`encode_group`] for a group labelled
/// `group_labels`; a label position outside the list is an integrity error. The fields
/// are built as they are decoded (no intermediate list), by a hand-written reader of
/// exactly postcard's form (`group_reader`), not through serde.
pub fn decode_group(b: &[u8], group_labels: &[Label], offset: u64) -> Result<GroupBody> {
    let mut out = Vec::new();
    decode_group_with(b, group_labels, offset, &mut |f| {
        out.push(f);
        true
    })?;
    Ok(out)
}

/// [`decode_group`] that hands each field to `sink` as soon as it is decoded, in
/// order, instead of collecting them; `sink` returns `false` to refuse a field (the
/// body then has more fields than the caller expects: an integrity error). Returns the
/// number of fields.
pub fn decode_group_with(
    b: &[u8],
    group_labels: &[Label],
    offset: u64,
    sink: &mut dyn FnMut(Field) -> bool,
) -> Result<usize> {
    let bad = || Error::Integrity { what: "label group", offset };
    match b.split_first() {
        Some((&GROUP_BODY_VERSION, rest)) => {
            super::group_reader::read_fields(rest, group_labels, sink).map_err(|_| bad())
        }
        Some((v, _)) => {
            Err(Error::UnsupportedVersion { found: u16::from(*v), supported: u16::from(GROUP_BODY_VERSION) })
        }
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::model::value::{AttachmentRef, Coding, Date, DateTime};
    use proptest::prelude::*;

    /// What postcard itself makes of a group body (its typed form
    /// `Vec<(Value, Vec<u32>)>`, positions then mapped to labels): the reference the
    /// hand-written reader must match exactly.
    fn reference(b: &[u8], labels: &[Label]) -> Option<Vec<Field>> {
        let (&GROUP_BODY_VERSION, rest) = b.split_first()? else { return None };
        let (fields, rest): (Vec<(Value, Vec<u32>)>, &[u8]) = postcard::take_from_bytes(rest).ok()?;
        if !rest.is_empty() {
            return None;
        }
        fields
            .into_iter()
            .map(|(value, own)| {
                let labels = own.iter().map(|i| labels.get(*i as usize).cloned()).collect::<Option<Vec<_>>>()?;
                Some(Field { value, labels })
            })
            .collect()
    }

    /// Fields compared exactly: each value as postcard bytes (`DateTime`'s `==` ignores
    /// the offset), and the labels.
    fn exact(fields: &[Field]) -> Vec<(Vec<u8>, Vec<Label>)> {
        fields.iter().map(|f| (postcard::to_allocvec(&f.value).unwrap_or_default(), f.labels.clone())).collect()
    }

    /// `decode_group` and the postcard reference agree: both refuse, or both give the
    /// same fields.
    fn agree(b: &[u8], labels: &[Label]) -> std::result::Result<(), TestCaseError> {
        let fast = decode_group(b, labels, 0).ok();
        let slow = reference(b, labels);
        prop_assert_eq!(fast.as_deref().map(exact), slow.as_deref().map(exact), "bytes {:?}", b);
        Ok(())
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,40}".prop_map(Value::Text),
            any::<i64>().prop_map(Value::Integer),
            (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Value::Decimal(Decimal::new(m, s))),
            any::<bool>().prop_map(Value::Boolean),
            any::<i32>().prop_map(|d| Value::Date(Date::from_stored_days(d))),
            (any::<i64>(), any::<i16>()).prop_map(|(m, o)| Value::DateTime(DateTime::from_stored(m, o))),
            (".{0,12}", ".{0,12}", proptest::option::of(".{0,12}"))
                .prop_map(|(system, code, display)| Value::from(Coding { system, code, display })),
            (any::<[u8; 16]>(), ".{0,8}", any::<u64>(), any::<u32>()).prop_map(|(id, ct, size, chunks)| {
                Value::from(AttachmentRef {
                    id,
                    content_type: ct,
                    size,
                    hash: [7; 32],
                    chunks,
                    first_offset: size / 3,
                    key: [9; 32],
                })
            }),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(Value::Group),
            ]
        })
    }

    fn group() -> impl Strategy<Value = Vec<Field>> {
        let labels = [Label::financial(), Label::normal(), Label::demographics()];
        proptest::collection::vec(
            (value(), proptest::collection::vec(0usize..3, 0..3)).prop_map(move |(value, own)| Field {
                value,
                labels: own.into_iter().map(|i| labels[i].clone()).collect(),
            }),
            0..8,
        )
    }

    proptest! {
        /// Every encoded group decodes to exactly what was encoded, as postcard reads it.
        #[test]
        fn decodes_what_was_encoded(fields in group()) {
            let labels = [Label::financial(), Label::normal(), Label::demographics()];
            let refs: Vec<&Field> = fields.iter().collect();
            let enc = encode_group(&refs, &labels).unwrap();
            let back = decode_group(&enc, &labels, 0).unwrap();
            prop_assert_eq!(exact(&back), exact(&fields));
            agree(&enc, &labels)?;
        }

        /// On damaged encodings (a byte changed, a cut, a byte inserted) and on random
        /// bytes, the reader accepts exactly what postcard accepts, with the same result.
        #[test]
        fn decodes_as_postcard_does(
            fields in group(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0u8..3,
            noise in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let labels = [Label::financial(), Label::normal(), Label::demographics()];
            let refs: Vec<&Field> = fields.iter().collect();
            let mut b = encode_group(&refs, &labels).unwrap().to_vec();
            let i = at.index(b.len());
            match how {
                0 => b[i] = byte,
                1 => b.truncate(i),
                _ => b.insert(i, byte),
            }
            agree(&b, &labels)?;
            agree(&b, &labels[..1])?;
            let mut random = vec![GROUP_BODY_VERSION];
            random.extend(&noise);
            agree(&random, &labels)?;
        }
    }

    /// Every single-byte change and every cut of a group holding one field of each
    /// kind the reader decodes itself (and two it hands to postcard), tried
    /// exhaustively: the reader and postcard agree on each.
    #[test]
    fn every_byte_change_matches_postcard() {
        let labels = [Label::financial(), Label::normal()];
        let fields = [
            Field { value: Value::Text("héllo".into()), labels: vec![Label::normal()] },
            Field::from(Value::Integer(-300)),
            Field::from(Value::Decimal(Decimal::new(-12_345, 2))),
            Field::from(Value::Boolean(true)),
            Field::from(Value::Date(Date::from_stored_days(19_000))),
            Field::from(Value::DateTime(DateTime::from_stored(1_700_000_000_000_000, -300))),
            Field::from(Value::from(Coding { system: "s".into(), code: "c".into(), display: Some("d".into()) })),
            Field { value: Value::List(vec![Value::Integer(1), Value::Boolean(false)]), labels: labels.to_vec() },
        ];
        let refs: Vec<&Field> = fields.iter().collect();
        let enc = encode_group(&refs, &labels).unwrap().to_vec();
        let check = |b: &[u8]| {
            let fast = decode_group(b, &labels, 0).ok();
            assert_eq!(fast.as_deref().map(exact), reference(b, &labels).as_deref().map(exact), "bytes {b:?}");
        };
        for i in 0..enc.len() {
            check(&enc[..i]);
            for byte in 0..=u8::MAX {
                let mut b = enc.clone();
                b[i] = byte;
                check(&b);
            }
        }
    }

    /// Postcard's varint limits, at their edges: the longest encodings, an overflowing
    /// last byte, a run of continuation bytes, and longer-than-needed encodings (which
    /// postcard accepts).
    #[test]
    fn varint_edges_match_postcard() {
        let labels = [Label::normal()];
        let one = |value: &[u8]| {
            let mut b = vec![GROUP_BODY_VERSION, 1];
            b.extend_from_slice(value);
            b.push(0);
            b
        };
        let cases: Vec<Vec<u8>> = vec![
            // Integer: ten bytes, last 0x01 (accepted) and 0x02 (overflow).
            one(&[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            one(&[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            one(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            // Date (i32): five bytes, last 0x0F and 0x10.
            one(&[4, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            one(&[4, 0xFF, 0xFF, 0xFF, 0xFF, 0x10]),
            // DateTime's offset (i16): three bytes, last 0x03 and 0x04.
            one(&[5, 0, 0xFF, 0xFF, 0x03]),
            one(&[5, 0, 0xFF, 0xFF, 0x04]),
            // Overlong: the variant index and a zero integer in two bytes each.
            one(&[0x81, 0x00, 0x80, 0x00]),
            // Booleans and option tags other than 0 and 1.
            one(&[3, 2]),
            one(&[6, 0, 0, 2]),
            one(&[6, 0, 0, 1, 1, b'x']),
            // A decimal in scientific form, and one that is not a number.
            one(&[2, 5, b'1', b'.', b'5', b'e', b'3']),
            one(&[2, 3, b'a', b'b', b'c']),
            // Invalid UTF-8, an unknown variant.
            one(&[0, 2, 0xC3, 0x28]),
            one(&[10, 0]),
        ];
        for b in cases {
            let fast = decode_group(&b, &labels, 0).ok();
            let slow = reference(&b, &labels);
            assert_eq!(fast.as_deref().map(exact), slow.as_deref().map(exact), "bytes {b:?}");
        }
    }

    #[test]
    fn round_trip() {
        let g = vec![Value::Integer(3), Value::Boolean(true)];
        let b = encode(&g);
        assert_eq!(decode::<Vec<Value>>(&b, "g", 0).unwrap(), g);
        assert!(decode::<Vec<Value>>(&b[..1], "g", 0).is_err());
        let mut v = b.to_vec();
        v[0] = 9;
        assert!(matches!(decode::<Vec<Value>>(&v, "g", 0), Err(Error::UnsupportedVersion { .. })));
    }

    #[test]
    fn group_bodies_store_label_positions() {
        let labels = [Label::financial(), Label::normal()];
        let a = Field { value: Value::Integer(3), labels: vec![Label::normal(), Label::financial(), Label::normal()] };
        let b = Field::from(Value::Boolean(false));
        let enc = encode_group(&[&a, &b], &labels).unwrap();
        assert_eq!(&enc[..], &[3, 2, 1, 6, 3, 1, 0, 1, 3, 0, 0][..]);
        assert_eq!(decode_group(&enc, &labels, 0).unwrap(), vec![a.clone(), b]);
        // A position outside the group's labels, a wrong version, truncation.
        assert!(matches!(decode_group(&enc, &labels[..1], 0), Err(Error::Integrity { .. })));
        let mut v = enc.to_vec();
        v[0] = 1;
        assert!(matches!(decode_group(&v, &labels, 0), Err(Error::UnsupportedVersion { .. })));
        for cut in 0..enc.len() {
            assert!(decode_group(&enc[..cut], &labels, 0).is_err());
        }
        // A field whose label is not in its group is refused at encoding.
        assert!(encode_group(&[&a], &labels[1..]).is_err());
        // The streaming form: fields in order, a refusing sink and trailing bytes are
        // integrity errors.
        let mut seen = Vec::new();
        assert_eq!(
            decode_group_with(&enc, &labels, 0, &mut |f| {
                seen.push(f);
                true
            })
            .unwrap(),
            2
        );
        assert_eq!(seen, decode_group(&enc, &labels, 0).unwrap());
        let mut taken = 0;
        let one_only = &mut |_| {
            taken += 1;
            taken == 1
        };
        assert!(matches!(decode_group_with(&enc, &labels, 0, one_only), Err(Error::Integrity { .. })));
        let mut longer = enc.to_vec();
        longer.push(0);
        assert!(matches!(decode_group(&longer, &labels, 0), Err(Error::Integrity { .. })));
    }
}
