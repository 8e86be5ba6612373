//! The verifying scan of the log, used at open (recovery) and by `verify`.
//!
//! Every frame's CRC is checked on a copy taken out of the map; sequence numbers must
//! follow each other; each commit frame must name exactly the frames since the
//! previous commit, carry the hash-chain value over them, and carry a valid MAC.
//! Frames are handed to the caller only once their commit has verified.
//!
//! Recovery policy: at the first bad or missing frame, the scan looks for a commit
//! with a valid MAC *after* the damage, numbered at least two past the last good
//! commit (the next one may have been in flight when the writer stopped, and was
//! then never acknowledged). If there is none, the damage is a torn tail
//! (an interrupted write) and everything from the last good commit on is discarded.
//! If there is one, valid data follows damage: that is corruption, reported with
//! its offset, and the vault refuses to open read-write.
//!
//! End of the log: the file may be longer than the log (the writer keeps a reserve of
//! zeros after it, see `log::writer`). An all-zero frame header (or, with fewer than
//! 24 bytes left, all-zero remaining bytes) ends the log: no frame has one, the magic
//! is non-zero. If every byte after it is zero too, that is a clean end; otherwise the
//! bytes after it go through the torn-tail-versus-corruption decision above, like any
//! other damage.

use crate::crypto::SecretKey;
use crate::crypto::keys::ct_eq;
use crate::error::Result;
use crate::format::frame::{self, Commit, FRAME_HEADER, FRAME_MAGIC, FrameType};
use crate::log::writer::LogHead;

/// A verified, committed frame.
#[derive(Debug, Clone)]
pub struct ScannedFrame {
    /// File offset of the frame.
    pub offset: u64,
    /// Frame type.
    pub ty: FrameType,
    /// Sequence number.
    pub seq: u64,
    /// Payload copy (empty for attachment chunks, which are verified when read).
    pub payload: Vec<u8>,
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct ScanOutcome {
    /// Frames verified (including commit frames).
    pub frames: u64,
    /// Commits verified.
    pub commits: u64,
    /// Frames seen per type (index = type byte).
    pub by_type: [u64; 9],
    /// Log head after the last valid commit.
    pub head: Option<LogHead>,
    /// File offset where the last valid commit's frames begin.
    pub last_commit_start: Option<u64>,
    /// A torn tail: offset where it starts, bytes discarded, and why.
    pub torn_tail: Option<(u64, u64, &'static str)>,
    /// Corruption: offset and what was wrong, when valid commits follow damage.
    pub corrupt: Option<(u64, String)>,
    /// Zero bytes after the log end (the writer's reserve), on a clean end.
    pub reserve: u64,
}

/// Whether every byte of `b` is zero.
pub fn all_zero(b: &[u8]) -> bool {
    // 16 bytes at a time: this runs over the whole reserve at every open and refresh.
    let (words, tail) = b.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && tail.iter().all(|&x| x == 0)
}

/// Where the frames that are in `bytes` right now end, walking frame headers only
/// from `from` (a frame boundary): the first all-zero frame header, if only zeros
/// follow it. Otherwise (non-zero bytes after a zero header, a non-zero header that
/// does not parse, a frame running past the end) the answer is the end of `bytes`:
/// there is damage or a write in flight, and the scan decides as usual (torn tail or
/// corruption).
///
/// A read-only open beside a writer calls this before it loads the keyring, and
/// accepts no commit past the answer (see [`scan_until`]): bytes after the log end
/// are overwritten in place by the writer while the map is in use, so a map is not a
/// snapshot, and a commit written after the keyring was loaded may name a patient
/// the loaded keyring does not have yet.
pub fn snapshot_end(bytes: &[u8], from: u64) -> u64 {
    let len = bytes.len() as u64;
    let mut pos = from;
    while pos < len {
        let rest = &bytes[pos as usize..];
        let mut hdr = [0u8; FRAME_HEADER];
        let hn = rest.len().min(FRAME_HEADER);
        hdr[..hn].copy_from_slice(&rest[..hn]);
        if hdr == [0u8; FRAME_HEADER] {
            return if all_zero(rest) { pos } else { len };
        }
        match frame::parse_head(&hdr[..hn]) {
            Ok(h) if h.total() as u64 <= len - pos => pos += h.total() as u64,
            _ => return len,
        }
    }
    len
}

/// Scans `bytes` from `start.end` to the end of the log (the end of `bytes`, or an
/// all-zero frame header).
pub fn scan(
    bytes: &[u8],
    start: LogHead,
    mac_key: &SecretKey,
    on_commit: &mut dyn FnMut(&[ScannedFrame], &Commit) -> Result<()>,
) -> Result<ScanOutcome> {
    scan_until(bytes, start, u64::MAX, mac_key, on_commit)
}

/// Like [`scan`], but treats `limit` (from [`snapshot_end`]) as the end of the file:
/// nothing from `limit` on is read, so commits written there after the snapshot was
/// taken are neither accepted nor mistaken for damage.
pub fn scan_until(
    bytes: &[u8],
    start: LogHead,
    limit: u64,
    mac_key: &SecretKey,
    on_commit: &mut dyn FnMut(&[ScannedFrame], &Commit) -> Result<()>,
) -> Result<ScanOutcome> {
    let bytes = &bytes[..usize::try_from(limit).map_or(bytes.len(), |l| l.min(bytes.len()))];
    let mut out = ScanOutcome { head: Some(start), ..Default::default() };
    let mut head = start;
    let mut pos = start.end;
    let mut pending: Vec<ScannedFrame> = Vec::new();
    let mut chain = start.chain;
    let mut next_seq = start.next_seq;
    let len = bytes.len() as u64;
    let fail: Option<&'static str> = loop {
        if pos >= len {
            break if pending.is_empty() { None } else { Some("frames without a commit") };
        }
        let rest = &bytes[pos as usize..];
        // Copy the header out of the map first: bytes past the log end may be
        // changing under the map (a writer overwriting its zero reserve).
        let mut hdr = [0u8; FRAME_HEADER];
        let hn = rest.len().min(FRAME_HEADER);
        hdr[..hn].copy_from_slice(&rest[..hn]);
        if hdr == [0u8; FRAME_HEADER] {
            // The end of the log (no frame header is all zero).
            if !pending.is_empty() {
                break Some("frames without a commit");
            }
            if !all_zero(rest) {
                break Some("non-zero bytes after the end of the log");
            }
            out.reserve = rest.len() as u64;
            break None;
        }
        let h = match frame::parse_head(&hdr[..hn]) {
            Ok(h) => h,
            Err(e) => break Some(e.describe()),
        };
        if rest.len() < h.total() {
            break Some("frame truncated");
        }
        // Copy out of the map before verifying: nothing is checked in one read and used in another.
        let copy = rest[..h.total()].to_vec();
        if copy[..FRAME_HEADER] != hdr {
            break Some("frame changed while it was read");
        }
        if let Err(e) = frame::check(&h, &copy) {
            break Some(e.describe());
        }
        if h.seq != next_seq {
            break Some("frame sequence number out of order");
        }
        out.frames += 1;
        out.by_type[h.ty as usize] += 1;
        if h.ty == FrameType::Commit {
            let Some(c) = Commit::decode(&copy[FRAME_HEADER..]) else {
                break Some("malformed commit frame");
            };
            let expected_first = pending.first().map(|f| f.seq).unwrap_or(h.seq);
            if c.number != head.commit_number + 1
                || c.first_seq != expected_first
                || c.frames as usize != pending.len()
                || !ct_eq(&c.chain, &chain)
                || !ct_eq(&c.mac, &mac_key.mac(&[&c.mac_input()]))
            {
                break Some("commit frame does not verify (hash chain or MAC)");
            }
            chain = frame::chain_step(&chain, &copy);
            out.last_commit_start = Some(pending.first().map_or(pos, |f| f.offset));
            on_commit(&pending, &c)?;
            pending.clear();
            pos += h.total() as u64;
            next_seq += 1;
            head = LogHead { end: pos, next_seq, commit_number: c.number, chain };
            out.commits += 1;
            out.head = Some(head);
        } else {
            chain = frame::chain_step(&chain, &copy);
            let payload = if h.ty == FrameType::AttachmentChunk { Vec::new() } else { copy[FRAME_HEADER..].to_vec() };
            pending.push(ScannedFrame { offset: pos, ty: h.ty, seq: h.seq, payload });
            pos += h.total() as u64;
            next_seq += 1;
        }
    };
    if let Some(reason) = fail {
        let bad_at = pending.first().map(|f| f.offset).unwrap_or(pos);
        // Uncommitted frames are not counted as verified data.
        out.frames -= pending.len() as u64;
        // The commit right after the last good one may have been in flight (its frames
        // are written before one fsync, and the disk may keep the commit frame while
        // losing an earlier page): it was never acknowledged, so damage before it is
        // still a torn tail. Only a later commit proves acknowledged data follows.
        if let Some(at) = find_later_commit(bytes, pos.max(head.end), head.commit_number + 1, mac_key) {
            out.corrupt = Some((pos, format!("{reason}; a valid commit follows at offset {at}")));
        } else {
            out.torn_tail = Some((bad_at, len - bad_at, reason));
        }
    }
    Ok(out)
}

/// Looks for a MAC-valid commit frame with a number above `after_number` anywhere
/// after `from`.
fn find_later_commit(bytes: &[u8], from: u64, after_number: u64, mac_key: &SecretKey) -> Option<u64> {
    let mut i = from as usize + 1;
    while i + FRAME_HEADER <= bytes.len() {
        if bytes[i] == FRAME_MAGIC[0]
            && bytes[i + 1] == FRAME_MAGIC[1]
            && bytes[i + 2] == FrameType::Commit as u8
            && let Ok(h) = frame::parse(&bytes[i..])
            && let Some(c) = Commit::decode(&bytes[i + FRAME_HEADER..i + h.total()])
            && c.number > after_number
            && ct_eq(&c.mac, &mac_key.mac(&[&c.mac_input()]))
        {
            return Some(i as u64);
        }
        i += 1;
    }
    None
}
