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

/// Metadata of one label group, kept in the envelope so a reader can show redaction
/// markers (field names and labels) for groups it may not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    /// The labels protecting the group (sorted).
    pub labels: Vec<Label>,
    /// The key generation of each label, in the same order.
    pub generations: Vec<u32>,
    /// Names of the fields in the group.
    pub fields: Vec<String>,
}

/// The envelope of a document version, sealed under the vault's meta key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A group body: the values of one label group's fields, in the order of the names in
/// its [`GroupMeta::fields`] (the names are in the envelope and bound into the group's
/// AAD, so they are not stored twice).
pub type GroupBody = Vec<Field>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    #[test]
    fn round_trip() {
        let g: GroupBody = vec![Field::from(Value::Integer(3))];
        let b = encode(&g);
        assert_eq!(decode::<GroupBody>(&b, "g", 0).unwrap(), g);
        assert!(decode::<GroupBody>(&b[..1], "g", 0).is_err());
        let mut v = b.to_vec();
        v[0] = 9;
        assert!(matches!(decode::<GroupBody>(&v, "g", 0), Err(Error::UnsupportedVersion { .. })));
    }
}
