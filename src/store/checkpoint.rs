//! Index checkpoints: the catalog saved into the log so a large vault opens without
//! decrypting every document.
//!
//! A checkpoint is one commit of Checkpoint frames. The first frame's payload is
//! `b'G' || sealed(index key, Global)`; the others are `b'P' || repeated
//! (slot u32 LE || length u32 LE || sealed(patient index key, that patient's entries))`.
//! Each patient's entries are sealed under that patient's own index key, so erasing a
//! patient (destroying the key) also makes its indexed values in every checkpoint
//! unreadable. The header's `checkpoint_offset` points at the newest checkpoint; it is
//! only a hint: open verifies the checkpoint and everything after it, and falls back
//! to a full scan (and says so) when anything is wrong.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::crypto::{KeyHierarchy, aead, keys};
use crate::error::{Error, Result};
use crate::format::body::{self, IndexTerm};
use crate::format::frame::{self, FRAME_HEADER, FrameType};
use crate::format::le_u32;
use crate::log::Region;
use crate::log::writer::LogHead;
use crate::model::{DocumentId, Kind, Label};
use crate::store::Store;
use crate::store::catalog::{Catalog, DocEntry, VersionLoc};
use crate::store::keyring::Keyring;

/// Largest payload of one checkpoint part frame.
const PART_BYTES: usize = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Global {
    end: u64,
    next_seq: u64,
    commit_number: u64,
    chain: [u8; 32],
    frames: Vec<(u8, Vec<u64>)>,
    patients: u32,
    parts: u32,
}

#[derive(Serialize, Deserialize)]
struct SavedDoc {
    id: DocumentId,
    kind: String,
    created_us: i64,
    versions: Vec<(u32, u64, i64)>,
    labels: Vec<Label>,
    terms: Vec<IndexTerm>,
    commit: u64,
}

/// The patient entries one loader thread decoded: (slot, documents) in slot order.
type Decoded = Result<Vec<(u32, Vec<SavedDoc>)>>;

fn global_aad(vid: &[u8; 16]) -> Vec<u8> {
    aead::aad("chartvault checkpoint global v1", &[vid])
}
fn patient_aad(vid: &[u8; 16], slot: u32, commit: u64) -> Vec<u8> {
    aead::aad("chartvault checkpoint patient v1", &[vid, &slot.to_le_bytes(), &commit.to_le_bytes()])
}

/// Encodes the catalog as checkpoint frame payloads.
pub(crate) fn encode(keys: &KeyHierarchy, ring: &Keyring, cat: &Catalog, head: LogHead) -> Vec<Vec<u8>> {
    let vid = keys.vault_id();
    let mut parts: Vec<Vec<u8>> = vec![vec![b'P']];
    let mut patients = 0u32;
    let mut slots: Vec<&u32> = cat.by_patient.keys().collect();
    slots.sort();
    for slot in slots {
        let Ok(pk) = ring.key(*slot, 0) else { continue };
        let docs: Vec<SavedDoc> = cat.by_patient[slot]
            .iter()
            .filter_map(|id| cat.docs.get(id).map(|e| (id, e)))
            .map(|(id, e)| SavedDoc {
                id: *id,
                kind: e.kind.to_string(),
                created_us: e.created_us,
                versions: e.versions.iter().map(|v| (v.version, v.offset, v.updated_us)).collect(),
                labels: e.labels.iter().cloned().collect(),
                terms: e.terms.clone(),
                commit: e.commit,
            })
            .collect();
        let mut sealed = Vec::new();
        aead::seal(
            &keys::patient_index_key(pk),
            &patient_aad(&vid, *slot, head.commit_number),
            &body::encode(&docs),
            &mut sealed,
        );
        let last = parts.last_mut().map(|p| p.len()).unwrap_or(0);
        if last + sealed.len() + 8 > PART_BYTES && last > 1 {
            parts.push(vec![b'P']);
        }
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(&slot.to_le_bytes());
            p.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
            p.extend_from_slice(&sealed);
        }
        patients += 1;
    }
    let global = Global {
        end: head.end,
        next_seq: head.next_seq,
        commit_number: head.commit_number,
        chain: head.chain,
        frames: cat.frames.iter().map(|(k, v)| (*k, v.clone())).collect(),
        patients,
        parts: parts.len() as u32,
    };
    let mut g = vec![b'G'];
    aead::seal(&keys.index, &global_aad(&vid), &body::encode(&global), &mut g);
    let mut out = vec![g];
    out.extend(parts);
    out
}

/// Loads the checkpoint at `offset`: the catalog it holds and the log head to resume
/// scanning from.
pub(crate) fn load(keys: &KeyHierarchy, ring: &Keyring, map: &dyn Region, offset: u64) -> Result<(Catalog, LogHead)> {
    let bytes = map.bytes();
    let bad = |what: &'static str| Error::Integrity { what, offset };
    let mut pos = usize::try_from(offset).map_err(|_| bad("checkpoint pointer"))?;
    let next = |pos: &mut usize| -> Result<Vec<u8>> {
        let rest = bytes.get(*pos..).ok_or(bad("checkpoint pointer"))?;
        let h = frame::parse_head(rest).map_err(|_| bad("checkpoint frame"))?;
        let copy = rest.get(..h.total()).ok_or(bad("checkpoint frame"))?.to_vec();
        frame::check(&h, &copy).map_err(|_| bad("checkpoint frame"))?;
        if h.ty != FrameType::Checkpoint {
            return Err(bad("checkpoint pointer"));
        }
        *pos += h.total();
        Ok(copy[FRAME_HEADER..].to_vec())
    };
    let vid = keys.vault_id();
    let g = next(&mut pos)?;
    if g.first() != Some(&b'G') {
        return Err(bad("checkpoint frame"));
    }
    let pt = aead::open(&keys.index, &global_aad(&vid), &g[1..]).map_err(|_| bad("checkpoint"))?;
    let global: Global = body::decode(&pt, "checkpoint", offset)?;
    if global.end != offset {
        return Err(bad("checkpoint pointer"));
    }
    // Collect the (still sealed) patient entries of every part frame.
    let mut sealed_parts: Vec<(u32, &[u8])> = Vec::with_capacity(global.patients as usize);
    let mut part_bytes: Vec<Vec<u8>> = Vec::with_capacity(global.parts as usize);
    for _ in 0..global.parts {
        let p = next(&mut pos)?;
        if p.first() != Some(&b'P') {
            return Err(bad("checkpoint frame"));
        }
        part_bytes.push(p);
    }
    for p in &part_bytes {
        let mut i = 1;
        while i < p.len() {
            if i + 8 > p.len() {
                return Err(bad("checkpoint frame"));
            }
            let slot = le_u32(p, i);
            let len = le_u32(p, i + 4) as usize;
            let sealed = p.get(i + 8..i + 8 + len).ok_or(bad("checkpoint frame"))?;
            i += 8 + len;
            sealed_parts.push((slot, sealed));
        }
    }
    let seen = sealed_parts.len() as u32;
    // Decrypt and decode on every core; apply in slot order on this thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = sealed_parts.len().div_ceil(threads).max(1);
    let commit = global.commit_number;
    let decoded: Vec<Decoded> = std::thread::scope(|scope| {
        let handles: Vec<_> = sealed_parts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Decoded {
                    let mut out = Vec::with_capacity(part.len());
                    for &(slot, sealed) in part {
                        let pk = match ring.key(slot, offset) {
                            Ok(k) => k,
                            Err(Error::Erased) => continue,
                            Err(e) => return Err(e),
                        };
                        let pt = aead::open(&keys::patient_index_key(pk), &patient_aad(&vid, slot, commit), sealed)
                            .map_err(|_| Error::Integrity { what: "checkpoint patient entry", offset })?;
                        out.push((slot, body::decode(&pt, "checkpoint patient entry", offset)?));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Integrity { what: "checkpoint", offset }))).collect()
    });
    let mut cat = Catalog { frames: global.frames.into_iter().collect::<HashMap<_, _>>(), ..Default::default() };
    let total: usize =
        decoded.iter().map(|r| r.as_ref().map_or(0, |v| v.iter().map(|(_, d)| d.len()).sum::<usize>())).sum();
    cat.docs.reserve(total);
    let mut loaded = Vec::with_capacity(total);
    for part in decoded {
        for (slot, docs) in part? {
            for d in docs {
                let kind = Kind::new(&d.kind).map_err(|_| bad("checkpoint patient entry"))?;
                let versions: Vec<VersionLoc> = d
                    .versions
                    .iter()
                    .map(|&(v, off, up)| VersionLoc { version: v, offset: off, updated_us: up })
                    .collect();
                if versions.is_empty() {
                    continue;
                }
                loaded.push((
                    d.id,
                    DocEntry {
                        patient_slot: slot,
                        kind,
                        created_us: d.created_us,
                        versions,
                        labels: d.labels.into_iter().collect(),
                        terms: d.terms,
                        commit: d.commit,
                    },
                ));
            }
        }
    }
    cat.bulk_load(loaded);
    if seen != global.patients {
        return Err(bad("checkpoint"));
    }
    let head = LogHead {
        end: global.end,
        next_seq: global.next_seq,
        commit_number: global.commit_number,
        chain: global.chain,
    };
    Ok((cat, head))
}

impl Store {
    /// Writes an index checkpoint of the current catalog and points the header at it.
    /// Returns the checkpoint's offset.
    pub fn checkpoint(&self) -> Result<u64> {
        let mut b = self.batch()?;
        let payloads = {
            let st = self.read_state();
            encode(self.keys(), &st.keyring, &st.catalog, st.head)
        };
        let mut first = None;
        for p in &payloads {
            let off = b.append_frame(FrameType::Checkpoint, p)?;
            first.get_or_insert(off);
        }
        b.commit()?;
        let off = first.unwrap_or(0);
        self.set_checkpoint_pointer(off)?;
        Ok(off)
    }

    /// Points the header at a checkpoint (test hook: tests point it at garbage).
    #[doc(hidden)]
    pub fn set_checkpoint_pointer(&self, offset: u64) -> Result<()> {
        let mut w = self.writer_guard();
        let mut h = self.header_guard();
        let mut nh = h.clone();
        nh.checkpoint_offset = offset;
        self.write_header(&mut w, &mut nh)?;
        *h = nh;
        Ok(())
    }

    /// Appends a checkpoint-typed frame with arbitrary content (test hook for the
    /// fallback path: a checkpoint that verifies as a frame but not as a checkpoint).
    #[doc(hidden)]
    pub fn append_bogus_checkpoint(&self, payload: &[u8]) -> Result<u64> {
        let mut b = self.batch()?;
        let off = b.append_frame(FrameType::Checkpoint, payload)?;
        b.commit()?;
        Ok(off)
    }
}
