//! The codec of what goes *inside* the AEAD: document envelopes, label-group bodies
//! and index terms.
//!
//! These use `postcard` (a stable, documented wire format with a maintained
//! implementation) behind a one-byte format version, isolated in this module so the
//! codec can change without touching the frame format.

use serde::{Deserialize, Serialize, de::DeserializeOwned, de::DeserializeSeed};
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
/// are built as they are decoded (no intermediate list).
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
            let mut de = postcard::Deserializer::from_bytes(rest);
            let n = seed::Group { labels: group_labels, sink }.deserialize(&mut de).map_err(|_| bad())?;
            // Trailing bytes are refused like every other malformed body.
            if !matches!(de.finalize(), Ok(rest) if rest.is_empty()) {
                return Err(bad());
            }
            Ok(n)
        }
        Some((v, _)) => {
            Err(Error::UnsupportedVersion { found: u16::from(*v), supported: u16::from(GROUP_BODY_VERSION) })
        }
        None => Err(bad()),
    }
}

/// The serde seeds of [`decode_group`]: they carry the group's labels down to each
/// field, so a field's label positions become labels while it is decoded.
mod seed {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};

    use crate::model::{Field, Label, Value};

    /// A whole group body: a sequence of fields, each handed to `sink`.
    pub(super) struct Group<'a, 's> {
        pub(super) labels: &'a [Label],
        pub(super) sink: &'s mut dyn FnMut(Field) -> bool,
    }
    /// One field: the tuple `(value, own label positions)`.
    struct OneField<'a>(&'a [Label]);
    /// A field's own label positions.
    struct Own<'a>(&'a [Label]);

    impl<'de> DeserializeSeed<'de> for Group<'_, '_> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Group<'_, '_> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a group body")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut n = 0;
            while let Some(f) = seq.next_element_seed(OneField(self.labels))? {
                if !(self.sink)(f) {
                    return Err(A::Error::custom("more fields than names"));
                }
                n += 1;
            }
            Ok(n)
        }
    }

    impl<'de> DeserializeSeed<'de> for OneField<'_> {
        type Value = Field;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_tuple(2, self)
        }
    }

    impl<'de> Visitor<'de> for OneField<'_> {
        type Value = Field;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a field (value, label positions)")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let value: Value = seq.next_element()?.ok_or_else(|| A::Error::custom("missing value"))?;
            let labels = seq.next_element_seed(Own(self.0))?.ok_or_else(|| A::Error::custom("missing labels"))?;
            Ok(Field { value, labels })
        }
    }

    impl<'de> DeserializeSeed<'de> for Own<'_> {
        type Value = Vec<Label>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Own<'_> {
        type Value = Vec<Label>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("label positions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(i) = seq.next_element::<u32>()? {
                let l = self.0.get(i as usize).ok_or_else(|| A::Error::custom("label position outside the group"))?;
                out.push(l.clone());
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

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
