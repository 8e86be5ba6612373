//! The log writer: stages frames of one commit, writes them with one `write` and
//! one `fsync` (group commit), and latches after any I/O failure.
//!
//! **Zero reserve.** The file is kept longer than the log: past the log end lie
//! pre-written zeros, and a small commit overwrites them in place. On ext4 (and other
//! journaling file systems) an `fdatasync` that does not change the file size need not
//! commit the journal, which makes a small durable commit markedly cheaper. When a small
//! commit leaves less room than it would need again, the zeros that extend the reserve
//! are appended to its own frames, in the same `write` and before its single `fsync`, so
//! the size change is paid once per many commits and no fsync is added. Large commits
//! never extend the reserve (a bulk load writes no megabytes of zeros). Recovery treats
//! an all-zero frame header as the end of the log (docs/FORMAT.md §14).

use std::sync::Arc;

use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::format::frame::{self, Commit, FRAME_HEADER, FrameType};
use crate::log::Storage;

/// Staged frames are flushed to the file (still uncommitted) past this size, so a
/// large attachment never needs more than this much memory.
pub const FLUSH_THRESHOLD: usize = 4 * 1024 * 1024;

/// Position of the log after the last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    /// File offset just past the last commit frame.
    pub end: u64,
    /// Sequence number the next frame gets.
    pub next_seq: u64,
    /// Number of the last commit (0 before the first).
    pub commit_number: u64,
    /// Hash chain value after the last commit frame.
    pub chain: [u8; 32],
}

/// Staging buffers up to this capacity are kept for the next commit.
const KEEP_BUFFER: usize = FLUSH_THRESHOLD + 64 * 1024;

/// Size of the zero reserve a small commit leaves after the log end when it extends it
/// (the file end is then rounded up to a multiple of [`RESERVE_ALIGN`]).
///
/// 256 KiB holds ~150 single-document commits (1.5–1.7 KB each, measured in
/// `examples/single_commit_probe.rs` and the benchmark), so the file size, and with it
/// the journal, changes once per ~150 commits. Every
/// reserve byte is written twice (as zero, then as a frame) whatever the reserve size,
/// so a larger reserve only trades a rarer, longer extending commit (one 256 KiB write)
/// against a smaller number of journal commits; 256 KiB keeps that one write well
/// under a millisecond and wastes at most 256 KiB of disk per vault.
pub const RESERVE: u64 = 256 * 1024;

/// Commits with more bytes than this (frames and commit frame together) are *large*:
/// they never extend the reserve, they overwrite what is left of it and append.
pub const SMALL_COMMIT: u64 = 64 * 1024;

/// The file end after a reserve extension is a multiple of this (whole blocks).
pub const RESERVE_ALIGN: u64 = 4096;

/// The single writer of a vault file.
pub struct LogWriter {
    storage: Arc<dyn Storage>,
    head: LogHead,
    latched: bool,
    /// The file length as this writer last made it (at least `head.end`). The bytes
    /// from `head.end` to here are the zero reserve, except after a batch that flushed
    /// frames and was then dropped: its uncommitted frames stay there (and are not
    /// zeroed, which could mean rewriting gigabytes for a large attachment), later
    /// commits overwrite them in place, and the next read-write open discards what is
    /// left of them as a torn tail, as it always did.
    file_end: u64,
    /// The staging buffer of the last commit, reused by the next one: a fresh 64 KiB
    /// allocation and free per commit cost more than the small commit itself
    /// (glibc consolidates its heap on every free of that size).
    spare: std::sync::Mutex<Vec<u8>>,
}

/// Frames staged for one commit.
#[derive(Debug)]
pub struct PendingCommit {
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    start: LogHead,
    next_seq: u64,
    chain: [u8; 32],
    frames: u32,
}

impl PendingCommit {
    /// An empty placeholder (never committed: its start head matches no writer).
    pub(crate) fn placeholder() -> Self {
        PendingCommit {
            buf: Vec::new(),
            buf_offset: 0,
            start: LogHead { end: 0, next_seq: 0, commit_number: u64::MAX, chain: [0; 32] },
            next_seq: 0,
            chain: [0; 32],
            frames: 0,
        }
    }

    /// File offset the next appended frame will have.
    pub fn next_offset(&self) -> u64 {
        self.buf_offset + self.buf.len() as u64
    }

    /// Number of frames staged.
    pub fn frames(&self) -> u32 {
        self.frames
    }
}

impl LogWriter {
    /// A writer positioned after a verified scan. Every byte of the file after
    /// `head.end` must be zero (a clean end, or a file truncated to `head.end`): the
    /// writer overwrites them in place.
    pub fn new(storage: Arc<dyn Storage>, head: LogHead) -> Self {
        // If the length cannot be read, assume there is no reserve: the first small
        // commit then writes a new one, over whatever zeros are there.
        let file_end = storage.len().unwrap_or(head.end).max(head.end);
        LogWriter { storage, head, latched: false, file_end, spare: std::sync::Mutex::new(Vec::new()) }
    }

    /// The file length as this writer last made it: the log end plus the zero reserve.
    pub fn file_end(&self) -> u64 {
        self.file_end
    }

    /// The log position after the last commit.
    pub fn head(&self) -> LogHead {
        self.head
    }

    /// Whether an I/O failure has latched the writer.
    pub fn is_latched(&self) -> bool {
        self.latched
    }

    /// Refuses further writes (after a failure outside the log, such as the keyring).
    pub fn latch(&mut self) {
        self.latched = true;
    }

    /// Starts staging a commit.
    pub fn begin(&self) -> Result<PendingCommit> {
        if self.latched {
            return Err(Error::WritesLatched);
        }
        let mut buf = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()));
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(16 * 1024);
        }
        Ok(PendingCommit {
            buf,
            buf_offset: self.head.end,
            start: self.head,
            next_seq: self.head.next_seq,
            chain: self.head.chain,
            frames: 0,
        })
    }

    fn io_fail(&mut self, e: std::io::Error) -> Error {
        self.latched = true;
        Error::io(self.storage.path(), e)
    }

    /// Appends a frame to `p`, returning its file offset.
    pub fn append(&mut self, p: &mut PendingCommit, ty: FrameType, payload: &[u8]) -> Result<u64> {
        if self.latched {
            return Err(Error::WritesLatched);
        }
        if payload.len() > frame::MAX_PAYLOAD {
            return Err(Error::TooLarge {
                what: "frame payload",
                size: payload.len() as u64,
                limit: frame::MAX_PAYLOAD as u64,
            });
        }
        let offset = p.next_offset();
        let at = p.buf.len();
        frame::encode(&mut p.buf, ty, p.next_seq, payload);
        p.chain = frame::chain_step(&p.chain, &p.buf[at..]);
        p.next_seq += 1;
        p.frames += 1;
        if p.buf.len() >= FLUSH_THRESHOLD {
            if let Err(e) = self.storage.write_at(p.buf_offset, &p.buf) {
                return Err(self.io_fail(e));
            }
            p.buf_offset += p.buf.len() as u64;
            p.buf.clear();
            self.file_end = self.file_end.max(p.buf_offset);
        }
        Ok(offset)
    }

    /// Appends the commit frame, writes everything and fsyncs. On success the commit
    /// is durable; on failure the writer latches and refuses further writes.
    pub fn commit(&mut self, mut p: PendingCommit, mac_key: &SecretKey, time_us: i64) -> Result<LogHead> {
        if self.latched {
            return Err(Error::WritesLatched);
        }
        if p.start != self.head {
            return Err(Error::InvalidArgument("a commit was staged against an older log head".into()));
        }
        let mut c = Commit {
            number: self.head.commit_number + 1,
            first_seq: p.start.next_seq,
            frames: p.frames,
            time_us,
            chain: p.chain,
            mac: [0; 32],
        };
        c.mac = mac_key.mac(&[&c.mac_input()]);
        let at = p.buf.len();
        frame::encode(&mut p.buf, FrameType::Commit, p.next_seq, &c.encode());
        let chain = frame::chain_step(&p.chain, &p.buf[at..]);
        let end = p.buf_offset + p.buf.len() as u64;
        let zeros_to = self.zeros_after(p.start.end, p.buf_offset, end);
        // The zeros go into the same write as the frames, before the one fsync.
        p.buf.resize(p.buf.len() + (zeros_to - end) as usize, 0);
        let written = self.storage.write_at(p.buf_offset, &p.buf).and_then(|()| self.storage.sync());
        if p.buf.capacity() <= KEEP_BUFFER {
            p.buf.clear();
            *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut p.buf);
        }
        if let Err(e) = written {
            return Err(self.io_fail(e));
        }
        self.head = LogHead { end, next_seq: p.next_seq + 1, commit_number: c.number, chain };
        self.file_end = self.file_end.max(zeros_to);
        Ok(self.head)
    }

    /// Where the zeros written after a commit ending at `end` must end (`end` for
    /// none). `start` is the log end before the commit, `buf_offset` where its last
    /// write starts (past `start` when the batch flushed frames early).
    ///
    /// A small commit that leaves less than twice its own size of reserve writes zeros
    /// up to `end + RESERVE`, rounded up to [`RESERVE_ALIGN`]; other commits none.
    fn zeros_after(&self, start: u64, buf_offset: u64, end: u64) -> u64 {
        let size = end - start;
        let small = buf_offset == start && size <= SMALL_COMMIT;
        if small && self.file_end.saturating_sub(end) < 2 * size {
            (end + RESERVE).div_ceil(RESERVE_ALIGN) * RESERVE_ALIGN
        } else {
            end
        }
    }

    /// Size of a frame with a payload of `len` bytes.
    pub const fn frame_size(len: usize) -> usize {
        FRAME_HEADER + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fault::FaultStorage;
    use crate::log::scan;

    const START: u64 = 8192;

    fn writer() -> (Arc<FaultStorage>, LogWriter) {
        let f = Arc::new(FaultStorage::new("data"));
        f.write_at(0, &[0x11; START as usize]).unwrap();
        let head = LogHead { end: START, next_seq: 1, commit_number: 0, chain: frame::chain_start(&[7; 16]) };
        (f.clone(), LogWriter::new(f, head))
    }

    fn commit(w: &mut LogWriter, key: &SecretKey, payloads: &[usize]) -> LogHead {
        let mut p = w.begin().unwrap();
        for &n in payloads {
            w.append(&mut p, FrameType::Record, &vec![0xab; n]).unwrap();
        }
        w.commit(p, key, 0).unwrap()
    }

    /// Scans the image: (commits, clean end, zero bytes after the log end).
    fn scanned(f: &FaultStorage, key: &SecretKey) -> (u64, bool, u64) {
        let img = f.volatile_image();
        let start = LogHead { end: START, next_seq: 1, commit_number: 0, chain: frame::chain_start(&[7; 16]) };
        let out = scan::scan(&img, start, key, &mut |_, _| Ok(())).unwrap();
        (out.commits, out.torn_tail.is_none() && out.corrupt.is_none(), out.reserve)
    }

    #[test]
    fn small_commits_overwrite_the_reserve_and_extend_it_in_their_own_write() {
        let (f, mut w) = writer();
        let key = SecretKey::random();
        let h = commit(&mut w, &key, &[1500]);
        let len = f.volatile_image().len() as u64;
        assert_eq!(len, (h.end + RESERVE).div_ceil(RESERVE_ALIGN) * RESERVE_ALIGN, "the first commit writes a reserve");
        assert_eq!(w.file_end(), len);
        // One write and one sync per commit, the zeros included.
        let before = f.controller().counts();
        let mut n = 1;
        while f.volatile_image().len() as u64 == len {
            let c = f.controller().counts();
            let h = commit(&mut w, &key, &[1500]);
            n += 1;
            let d = f.controller().counts();
            assert_eq!((d.writes - c.writes, d.syncs - c.syncs), (1, 1));
            assert!(f.volatile_image()[h.end as usize..].iter().all(|&b| b == 0), "zeros after the log end");
            assert!(n < 1000);
        }
        // The commit that extended the reserve was the first to leave less than twice
        // its size: about RESERVE / commit size commits fit.
        assert!(n > 100, "{n} commits");
        let after = f.controller().counts();
        assert_eq!(after.growths - before.growths, 1, "the file grew once, in the extending commit");
        let (commits, clean, reserve) = scanned(&f, &key);
        assert_eq!(commits, n);
        assert!(clean && (2 * 1524..=RESERVE + RESERVE_ALIGN).contains(&reserve), "{reserve}");
    }

    #[test]
    fn large_commits_write_no_reserve() {
        let (f, mut w) = writer();
        let key = SecretKey::random();
        let h = commit(&mut w, &key, &[40_000, 40_000]);
        assert_eq!(f.volatile_image().len() as u64, h.end, "a large commit appends its frames only");
        let h = commit(&mut w, &key, &[100]);
        assert!(f.volatile_image().len() as u64 > h.end + RESERVE / 2, "a small one then writes a reserve");
        let len = f.volatile_image().len() as u64;
        let h = commit(&mut w, &key, &[300_000]);
        assert_eq!(f.volatile_image().len() as u64, h.end.max(len), "a large one overwrites it and appends");
        assert_eq!(scanned(&f, &key).0, 3);
    }

    #[test]
    fn frames_a_dropped_batch_flushed_are_a_torn_tail_after_later_commits() {
        let (f, mut w) = writer();
        let key = SecretKey::random();
        commit(&mut w, &key, &[100]);
        // A batch big enough to flush, then dropped.
        let mut p = w.begin().unwrap();
        for _ in 0..5 {
            w.append(&mut p, FrameType::AttachmentChunk, &vec![0xcd; 1 << 20]).unwrap();
        }
        let flushed = p.buf_offset;
        assert!(flushed > w.head().end + (4 << 20));
        drop(p);
        let before = f.controller().counts().bytes_written;
        let h = commit(&mut w, &key, &[100]);
        assert!(f.controller().counts().bytes_written - before < 4096, "the next commit writes no megabytes of zeros");
        assert!(f.volatile_image().len() as u64 >= flushed && w.file_end() >= flushed);
        let img = f.volatile_image();
        let start = LogHead { end: START, next_seq: 1, commit_number: 0, chain: frame::chain_start(&[7; 16]) };
        let out = scan::scan(&img, start, &key, &mut |_, _| Ok(())).unwrap();
        assert_eq!(out.commits, 2, "both commits verify");
        assert!(out.corrupt.is_none());
        assert_eq!(out.torn_tail.map(|t| t.0), Some(h.end), "what the dropped batch left is a torn tail");
    }
}

#[cfg(test)]
mod log_end_tests {
    use super::*;
    use crate::log::scan;

    const START: u64 = 8192;

    fn head() -> LogHead {
        LogHead { end: START, next_seq: 1, commit_number: 0, chain: frame::chain_start(&[7; 16]) }
    }

    /// A log of `n` commits of one record frame each, then `tail`.
    fn image(key: &SecretKey, n: usize, tail: &[u8]) -> (Vec<u8>, u64) {
        let f = Arc::new(crate::log::fault::FaultStorage::new("data"));
        f.write_at(0, &[0x11; START as usize]).unwrap();
        let mut w = LogWriter::new(f.clone(), head());
        for _ in 0..n {
            let mut p = w.begin().unwrap();
            w.append(&mut p, FrameType::Record, &[0xab; 300]).unwrap();
            // Large enough to write no reserve, so the image ends at the log end.
            w.append(&mut p, FrameType::AttachmentChunk, &[0xcd; SMALL_COMMIT as usize]).unwrap();
            w.commit(p, key, 0).unwrap();
        }
        let mut img = f.volatile_image();
        let end = w.head().end;
        assert_eq!(img.len() as u64, end);
        img.extend_from_slice(tail);
        (img, end)
    }

    fn run(img: &[u8], key: &SecretKey) -> scan::ScanOutcome {
        scan::scan(img, head(), key, &mut |_, _| Ok(())).unwrap()
    }

    #[test]
    fn zeros_shorter_than_a_header_are_a_clean_end() {
        let key = SecretKey::random();
        for n in [1, 23, 24, 25, 4096] {
            let (img, end) = image(&key, 2, &vec![0; n]);
            let out = run(&img, &key);
            assert_eq!((out.commits, out.head.unwrap().end, out.reserve), (2, end, n as u64), "{n} zeros");
            assert!(out.torn_tail.is_none() && out.corrupt.is_none(), "{n} zeros");
            assert_eq!(scan::snapshot_end(&img, START), end);
        }
    }

    #[test]
    fn a_zero_header_after_uncommitted_frames_is_a_torn_tail() {
        let key = SecretKey::random();
        let (mut img, end) = image(&key, 2, &[]);
        // An uncommitted frame, then zeros.
        let mut fr = Vec::new();
        // Two commits of three frames each (record, chunk, commit): the next is 7.
        frame::encode(&mut fr, FrameType::Record, 7, &[0xee; 100]);
        img.extend_from_slice(&fr);
        img.extend_from_slice(&[0; 4096]);
        let out = run(&img, &key);
        assert_eq!(out.commits, 2);
        let (at, len, why) = out.torn_tail.expect("torn tail");
        assert_eq!((at, len, why), (end, img.len() as u64 - end, "frames without a commit"));
        assert!(out.corrupt.is_none());
        // Garbage after a zero header is a torn tail too, and the read-only snapshot
        // then covers the whole file (the scan decides).
        let (mut img, end) = image(&key, 2, &[0; 100]);
        img[end as usize + 60] = 1;
        let out = run(&img, &key);
        assert_eq!(out.torn_tail.map(|t| (t.0, t.2)), Some((end, "non-zero bytes after the end of the log")));
        assert_eq!(scan::snapshot_end(&img, START), img.len() as u64);
    }
}
