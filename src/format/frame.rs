//! The frame codec of the log.
//!
//! ```text
//! offset size field
//! 0      2    magic 0xC7 0x56
//! 2      1    frame type (FrameType)
//! 3      1    flags (0)
//! 4      4    payload length, u32 LE (at most MAX_PAYLOAD)
//! 8      8    frame sequence number, u64 LE (previous + 1)
//! 16     4    CRC-32 (IEEE) of bytes 0..16 and the payload
//! 20     4    reserved (0)
//! 24     n    payload
//! ```
//! The CRC catches torn and damaged frames cheaply; authenticity comes from the AEAD
//! inside payloads and from the commit frames' hash chain and MAC.

use super::{le_u32, le_u64};

/// Frame magic bytes.
pub const FRAME_MAGIC: [u8; 2] = [0xC7, 0x56];
/// Size of a frame header.
pub const FRAME_HEADER: usize = 24;
/// Largest payload a frame may carry (16 MiB).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// One version of a document.
    Record = 1,
    /// One chunk of a binary attachment.
    AttachmentChunk = 2,
    /// A commit: hash chain and MAC over every frame since the previous commit.
    Commit = 3,
    /// An audit entry.
    Audit = 4,
    /// An access policy version.
    Policy = 5,
    /// A part of an index checkpoint.
    Checkpoint = 6,
    /// A disclosure-ledger entry.
    Disclosure = 7,
    /// Patient rules (consent, VIP, self-pay, Part 2 consents).
    Admin = 8,
}

impl FrameType {
    /// Decodes a frame type byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => FrameType::Record,
            2 => FrameType::AttachmentChunk,
            3 => FrameType::Commit,
            4 => FrameType::Audit,
            5 => FrameType::Policy,
            6 => FrameType::Checkpoint,
            7 => FrameType::Disclosure,
            8 => FrameType::Admin,
            _ => return None,
        })
    }
}

/// Encodes a frame into `out`.
pub fn encode(out: &mut Vec<u8>, ty: FrameType, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC);
    out.push(ty as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 16]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
}

/// A frame header that parsed, before its CRC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Frame type.
    pub ty: FrameType,
    /// Sequence number.
    pub seq: u64,
    /// Payload length.
    pub len: usize,
    /// Stored CRC.
    pub crc: u32,
}

impl FrameHead {
    /// Total size of the frame on disk.
    pub fn total(&self) -> usize {
        FRAME_HEADER + self.len
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the payload needs.
    Truncated,
    /// Bad magic, type, flags or length.
    BadHeader,
    /// CRC mismatch.
    Checksum,
}

impl FrameError {
    /// A short description (no data).
    pub fn describe(self) -> &'static str {
        match self {
            FrameError::Truncated => "frame truncated",
            FrameError::BadHeader => "invalid frame header",
            FrameError::Checksum => "frame checksum mismatch",
        }
    }
}

/// Parses a frame header from the start of `b`.
pub fn parse_head(b: &[u8]) -> Result<FrameHead, FrameError> {
    if b.len() < FRAME_HEADER {
        return Err(FrameError::Truncated);
    }
    if b[..2] != FRAME_MAGIC || b[3] != 0 || b[20..24] != [0; 4] {
        return Err(FrameError::BadHeader);
    }
    let ty = FrameType::from_u8(b[2]).ok_or(FrameError::BadHeader)?;
    let len = le_u32(b, 4) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::BadHeader);
    }
    Ok(FrameHead { ty, seq: le_u64(b, 8), len, crc: le_u32(b, 16) })
}

/// Checks the CRC of a whole frame (`b` holds exactly header + payload).
pub fn check(head: &FrameHead, b: &[u8]) -> Result<(), FrameError> {
    if b.len() < head.total() {
        return Err(FrameError::Truncated);
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..16]);
    h.update(&b[FRAME_HEADER..head.total()]);
    if h.finalize() != head.crc {
        return Err(FrameError::Checksum);
    }
    Ok(())
}

/// Checks the CRC of a frame given as its header bytes and payload copied separately.
pub fn check_parts(head: &FrameHead, header: &[u8; FRAME_HEADER], payload: &[u8]) -> bool {
    if payload.len() != head.len {
        return false;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..16]);
    h.update(payload);
    h.finalize() == head.crc
}

/// Parses and checks the frame at the start of `b`.
pub fn parse(b: &[u8]) -> Result<FrameHead, FrameError> {
    let head = parse_head(b)?;
    check(&head, b)?;
    Ok(head)
}

/// The commit frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Commit number, starting at 1.
    pub number: u64,
    /// Sequence number of the first frame of this commit.
    pub first_seq: u64,
    /// Number of frames in this commit (excluding the commit frame).
    pub frames: u32,
    /// Commit time, Unix microseconds.
    pub time_us: i64,
    /// Hash chain value after the commit's frames.
    pub chain: [u8; 32],
    /// MAC over bytes 0..64 of the payload.
    pub mac: [u8; 32],
}

/// Length of a commit payload.
pub const COMMIT_LEN: usize = 96;

impl Commit {
    /// The bytes covered by the MAC.
    pub fn mac_input(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..8].copy_from_slice(&self.number.to_le_bytes());
        b[8..16].copy_from_slice(&self.first_seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.frames.to_le_bytes());
        b[24..32].copy_from_slice(&self.time_us.to_le_bytes());
        b[32..64].copy_from_slice(&self.chain);
        b
    }

    /// Encodes the payload.
    pub fn encode(&self) -> [u8; COMMIT_LEN] {
        let mut b = [0u8; COMMIT_LEN];
        b[..64].copy_from_slice(&self.mac_input());
        b[64..].copy_from_slice(&self.mac);
        b
    }

    /// Decodes a payload.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != COMMIT_LEN || b[20..24] != [0; 4] {
            return None;
        }
        let mut chain = [0u8; 32];
        chain.copy_from_slice(&b[32..64]);
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&b[64..96]);
        Some(Commit {
            number: le_u64(b, 0),
            first_seq: le_u64(b, 8),
            frames: le_u32(b, 16),
            time_us: le_u64(b, 24) as i64,
            chain,
            mac,
        })
    }
}

/// Advances the hash chain over one whole frame.
pub fn chain_step(chain: &[u8; 32], frame: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(chain);
    h.update(frame);
    *h.finalize().as_bytes()
}

/// The chain's starting value for a vault.
pub fn chain_start(vault_id: &[u8; 16]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("chartvault 2026 hash chain v1");
    h.update(vault_id);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_damage() {
        let mut v = Vec::new();
        encode(&mut v, FrameType::Record, 42, b"payload");
        let h = parse(&v).unwrap();
        assert_eq!((h.ty, h.seq, h.len), (FrameType::Record, 42, 7));
        for i in 0..v.len() {
            let mut t = v.clone();
            t[i] ^= 0x10;
            assert!(parse(&t).is_err(), "flip at {i} accepted");
        }
        assert_eq!(parse(&v[..v.len() - 1]), Err(FrameError::Truncated));
    }

    #[test]
    fn commit_round_trip() {
        let c = Commit { number: 3, first_seq: 9, frames: 2, time_us: 77, chain: [5; 32], mac: [6; 32] };
        assert_eq!(Commit::decode(&c.encode()), Some(c));
    }
}
