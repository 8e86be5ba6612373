//! Full verification: every frame's checksum, every commit's hash chain and MAC, and
//! every sealed part of every record and attachment chunk.

use crate::error::{Error, Result};
use crate::format::frame::{FRAME_HEADER, FrameType};
use crate::format::header::HEADER_REGION;
use crate::log::scan::{self, ScannedFrame};
use crate::log::writer::LogHead;
use crate::store::{Store, open_envelope, record};

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Bytes of log examined: from the end of the header region to the log end (the
    /// end of the last verified commit, or of the tail after it when there is one).
    pub bytes: u64,
    /// Zero bytes after the log end (the writer's reserve, docs/FORMAT.md §13.3). Not
    /// part of the log; any non-zero byte there is reported as a torn tail.
    pub reserve: u64,
    /// Frames whose checksum verified.
    pub frames: u64,
    /// Commits whose chain and MAC verified.
    pub commits: u64,
    /// Document versions fully decrypted and checked.
    pub records: u64,
    /// Label groups authenticated.
    pub groups: u64,
    /// Attachment chunks authenticated (through the attachments' references).
    pub attachment_chunks: u64,
    /// Records skipped because their patient was erased (keys destroyed by design).
    pub erased_records: u64,
    /// Other frames (audit, policy, ...) whose checksum and commit verified.
    pub other_frames: u64,
    /// Uncommitted bytes at the end (a torn tail that open would discard).
    pub torn_tail: Option<(u64, u64, &'static str)>,
    /// Problems found: (offset, description). Empty means clean.
    pub problems: Vec<(u64, String)>,
}

impl VerifyReport {
    /// True if nothing is wrong. An uncommitted tail (an interrupted or abandoned
    /// write after the last commit) is reported but is not damage: open discards it.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Verifies the whole file with the vault's keys. Needs no policy: it reveals
    /// nothing but counts and offsets.
    pub fn verify(&self) -> Result<VerifyReport> {
        let map = self.data_map()?;
        let bytes = map.bytes();
        let keys = self.keys();
        let vid = self.vault_id();
        let mut rep = VerifyReport::default();
        let start = LogHead {
            end: HEADER_REGION,
            next_seq: 1,
            commit_number: 0,
            chain: crate::format::frame::chain_start(&vid),
        };
        let check_record = |f: &ScannedFrame, rep: &mut VerifyReport| {
            let off = f.offset;
            let Some(rec) = record::parse(&f.payload) else {
                rep.problems.push((off, "malformed record frame".into()));
                return;
            };
            let env = match open_envelope(keys, &rec, off) {
                Ok(e) => e,
                Err(e) => return rep.problems.push((off, e.to_string())),
            };
            let pk = match self.read_state().keyring.key(env.patient_slot, off) {
                Ok(k) => k.clone(),
                Err(crate::Error::Erased) => {
                    rep.erased_records += 1;
                    return;
                }
                Err(e) => return rep.problems.push((off, e.to_string())),
            };
            if rec.groups.len() != env.groups.len() {
                return rep.problems.push((off, "label group count differs from the envelope".into()));
            }
            for (i, g) in env.groups.iter().enumerate() {
                match super::read::open_group(keys, &rec, i, g, (env.patient_slot, &pk), off) {
                    Ok(values) => {
                        rep.groups += 1;
                        for field in &values {
                            let mut atts = Vec::new();
                            field.value.walk(&mut |v| {
                                if let crate::Value::Attachment(a) = v {
                                    atts.push(a.clone());
                                }
                            });
                            for a in atts {
                                match self.read_attachment(&a, &mut std::io::sink()) {
                                    Ok(_) => rep.attachment_chunks += u64::from(a.chunks),
                                    Err(e) => rep.problems.push((a.first_offset, e.to_string())),
                                }
                            }
                        }
                    }
                    Err(Error::Integrity { .. }) => {
                        rep.problems.push((off, format!("label group {i} fails authentication")))
                    }
                    Err(e) => rep.problems.push((off, e.to_string())),
                }
            }
            rep.records += 1;
        };
        let mut on_commit = |frames: &[ScannedFrame], _c: &crate::format::frame::Commit| -> Result<()> {
            for f in frames {
                match f.ty {
                    FrameType::Record => check_record(f, &mut rep),
                    FrameType::AttachmentChunk => {}
                    _ => rep.other_frames += 1,
                }
            }
            Ok(())
        };
        let out = scan::scan(bytes, start, &keys.commit_mac, &mut on_commit)?;
        rep.frames = out.frames;
        rep.commits = out.commits;
        rep.torn_tail = out.torn_tail;
        rep.reserve = out.reserve;
        let file = bytes.len() as u64;
        rep.bytes = file.saturating_sub(out.reserve).saturating_sub(HEADER_REGION);
        if let Some((off, reason)) = out.corrupt {
            rep.problems.push((off, reason));
        }
        let _ = FRAME_HEADER;
        Ok(rep)
    }
}
