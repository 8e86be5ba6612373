//! The disclosure ledger: an append-only record of every release of information,
//! separate from the access log, for the accounting of disclosures (45 CFR 164.528).

use serde::{Deserialize, Serialize};

use crate::crypto::{KeyHierarchy, aead};
use crate::error::{Error, Result};
use crate::format::body;
use crate::format::frame::FrameType;
use crate::model::DocumentId;
use crate::store::Store;

/// One disclosure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// When, Unix microseconds.
    pub time_us: i64,
    /// The patient whose information was disclosed.
    pub patient: String,
    /// Who received it (name and address of the recipient, as 164.528 asks).
    pub recipient: String,
    /// A brief description of what was disclosed.
    pub description: String,
    /// Purpose of use (HL7 code).
    pub purpose: String,
    /// Whether the disclosure is exempt from accounting (treatment, payment,
    /// operations, to the individual); exempt entries are tagged, not dropped.
    pub exempt: bool,
    /// Documents disclosed.
    pub documents: Vec<DocumentId>,
    /// The user who made the disclosure.
    pub user: String,
}

fn aad(vid: &[u8; 16]) -> Vec<u8> {
    aead::aad("chartvault disclosure v1", &[vid])
}

/// Seals a disclosure for a Disclosure frame.
pub fn seal(keys: &KeyHierarchy, d: &Disclosure) -> Vec<u8> {
    let mut out = Vec::new();
    aead::seal(&keys.audit, &aad(&keys.vault_id()), &body::encode(d), &mut out);
    out
}

/// Every disclosure in the ledger, oldest first.
pub fn read_all(store: &Store) -> Result<Vec<Disclosure>> {
    let st = store.read_state();
    let map = st.map.clone();
    let offsets = st.catalog.frames_of(FrameType::Disclosure).to_vec();
    drop(st);
    offsets
        .iter()
        .map(|&off| {
            let p = store.read_frame(&*map, off, FrameType::Disclosure)?;
            let pt = aead::open(&store.keys().audit, &aad(&store.vault_id()), &p)
                .map_err(|_| Error::Integrity { what: "disclosure entry", offset: off })?;
            body::decode(&pt, "disclosure entry", off)
        })
        .collect()
}
