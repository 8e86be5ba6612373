//! A hand-written reader of label-group bodies: the postcard form that
//! [`super::body::encode_group`] writes, `postcard(Vec<(Value, Vec<u32>)>)` after the
//! version byte (docs/FORMAT.md §10.5), read without going through serde.
//!
//! Every document read decodes its group bodies, about 18 fields per document in the
//! benchmark's workload; through serde and postcard that took about 670 instructions
//! per field. This reader takes the common values (text, integer, decimal, boolean,
//! date, datetime, code) straight from the bytes and hands the others (attachment,
//! list, group, and any unknown variant) to postcard itself, one value at a time. The
//! bytes it accepts, and what they decode to, are exactly postcard's: the same
//! varint rules (at most 10, 5 or 3 bytes for 64-, 32- and 16-bit integers, the last
//! byte checked for overflow, longer-than-needed encodings accepted as postcard
//! accepts them), zigzag for signed integers, one byte 0 or 1 for booleans and option
//! tags, UTF-8 checked strings, and a decimal parsed as `rust_decimal`'s serde form
//! parses it. The tests check it against postcard on random values and on random and
//! mutated bytes (`decodes_as_postcard_does`), and the `body_codec` fuzz target does
//! the same on every input. Decoding a document's groups here takes about 10.1k
//! instructions against 12.1k through serde (callgrind, `chartvault-bench profile
//! chart`, the sink that names each field included).

use std::str::FromStr;

use crate::model::value::{Coding, Date, DateTime, Decimal};
use crate::model::{Field, Label, Value};

/// The body is not a well-formed group body (the caller reports an integrity error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

type Read<T> = Result<T, Malformed>;

/// Reads the fields of a group body (the bytes after its version byte) and hands each
/// to `sink` in order; `sink` returns `false` to refuse a field (an error). The whole
/// input must be used. `group_labels` are the group's labels: a field's own labels are
/// stored as positions in that list. Returns the number of fields.
pub(crate) fn read_fields(bytes: &[u8], group_labels: &[Label], sink: &mut dyn FnMut(Field) -> bool) -> Read<usize> {
    let mut input = Input(bytes);
    let count = input.len()?;
    let mut n = 0;
    while n < count {
        let value = input.value()?;
        let labels = input.own_labels(group_labels)?;
        if !sink(Field { value, labels }) {
            return Err(Malformed);
        }
        n += 1;
    }
    if input.0.is_empty() { Ok(n) } else { Err(Malformed) }
}

/// The bytes not read yet.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Read<u8> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A LEB128 varint of at most `max_bytes` bytes whose last byte may be at most
    /// `max_last` (postcard's `try_take_varint_*`).
    #[inline]
    fn varint(&mut self, max_bytes: usize, max_last: u8) -> Read<u64> {
        let mut out = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return if i == max_bytes - 1 && b > max_last { Err(Malformed) } else { Ok(out) };
            }
        }
        Err(Malformed)
    }

    fn u64(&mut self) -> Read<u64> {
        self.varint(10, 1)
    }

    fn u32(&mut self) -> Read<u32> {
        self.varint(5, 0x0F).map(|v| v as u32)
    }

    fn u16(&mut self) -> Read<u16> {
        self.varint(3, 0x03).map(|v| v as u16)
    }

    /// A length or count: postcard writes a `usize` as a varint of the pointer width.
    fn len(&mut self) -> Read<usize> {
        #[cfg(target_pointer_width = "64")]
        let n = self.u64()?;
        #[cfg(not(target_pointer_width = "64"))]
        let n = u64::from(self.u32()?);
        usize::try_from(n).map_err(|_| Malformed)
    }

    fn i64(&mut self) -> Read<i64> {
        let n = self.u64()?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    fn i32(&mut self) -> Read<i32> {
        let n = self.u32()?;
        Ok((n >> 1) as i32 ^ -((n & 1) as i32))
    }

    fn i16(&mut self) -> Read<i16> {
        let n = self.u16()?;
        Ok((n >> 1) as i16 ^ -((n & 1) as i16))
    }

    /// A one-byte flag: postcard's `bool` and `Option` tag (0 or 1, nothing else).
    fn flag(&mut self) -> Read<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed),
        }
    }

    fn str(&mut self) -> Read<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Malformed)
    }

    fn string(&mut self) -> Read<String> {
        self.str().map(str::to_owned)
    }

    /// One [`Value`]: its variant index (the order of `Value`'s variants, as serde's
    /// derive numbers them), then its content.
    fn value(&mut self) -> Read<Value> {
        let at_variant = self.0;
        Ok(match self.u32()? {
            0 => Value::Text(self.string()?),
            1 => Value::Integer(self.i64()?),
            2 => {
                // rust_decimal's serde form (feature `serde-str`): a string.
                let s = self.str()?;
                Value::Decimal(Decimal::from_str(s).or_else(|_| Decimal::from_scientific(s)).map_err(|_| Malformed)?)
            }
            3 => Value::Boolean(self.flag()?),
            4 => Value::Date(Date::from_stored_days(self.i32()?)),
            5 => {
                let micros = self.i64()?;
                Value::DateTime(DateTime::from_stored(micros, self.i16()?))
            }
            6 => {
                let system = self.string()?;
                let code = self.string()?;
                let display = if self.flag()? { Some(self.string()?) } else { None };
                Value::from(Coding { system, code, display })
            }
            // Attachments, lists, nested groups and unknown variants: postcard itself.
            _ => {
                let (v, rest) = postcard::take_from_bytes::<Value>(at_variant).map_err(|_| Malformed)?;
                self.0 = rest;
                v
            }
        })
    }

    /// A field's own labels: a count, then positions in `group_labels`.
    fn own_labels(&mut self, group_labels: &[Label]) -> Read<Vec<Label>> {
        let n = self.len()?;
        // Every position takes at least one byte: a hostile count cannot over-allocate.
        let mut out = Vec::with_capacity(n.min(self.0.len()));
        for _ in 0..n {
            let i = self.u32()?;
            out.push(group_labels.get(i as usize).ok_or(Malformed)?.clone());
        }
        Ok(out)
    }
}
