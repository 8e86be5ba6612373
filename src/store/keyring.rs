//! The keyring file: patient keys, loaded at open and extended or destroyed in place.

use std::collections::HashMap;
use std::sync::Arc;

use crate::crypto::{KeyHierarchy, SecretKey};
use crate::error::{Error, Result};
use crate::format::keyring::{self as codec, KEYRING_HEADER, RECORD_SIZE, Record};
use crate::log::Storage;

/// One record of the keyring as loaded.
pub enum Entry {
    /// A live patient key.
    Live {
        /// Patient identifier.
        patient: String,
        /// The key.
        key: SecretKey,
    },
    /// Destroyed (the patient was erased).
    Destroyed,
    /// Unreadable (damaged, or a torn write of a never-committed patient).
    Damaged,
}

/// The patient keys of a vault.
pub struct Keyring {
    storage: Arc<dyn Storage>,
    entries: Vec<Entry>,
    by_patient: HashMap<String, u32>,
}

impl Keyring {
    /// Creates an empty keyring file.
    pub fn create(storage: Arc<dyn Storage>, vault_id: &[u8; 16]) -> Result<Self> {
        storage.write_at(0, &codec::encode_header(vault_id)).map_err(|e| Error::io(storage.path(), e))?;
        storage.sync().map_err(|e| Error::io(storage.path(), e))?;
        Ok(Keyring { storage, entries: Vec::new(), by_patient: HashMap::new() })
    }

    /// Loads every record.
    pub fn load(storage: Arc<dyn Storage>, keys: &KeyHierarchy) -> Result<Self> {
        let io = |e| Error::io(storage.path(), e);
        let len = storage.len().map_err(io)?;
        let mut head = [0u8; KEYRING_HEADER];
        if len < KEYRING_HEADER as u64 {
            return Err(Error::NotAVault { path: storage.path().into(), reason: "keyring file is too short".into() });
        }
        storage.read_at(0, &mut head).map_err(io)?;
        let vid = keys.vault_id();
        if !codec::check_header(&head, &vid) {
            return Err(Error::NotAVault {
                path: storage.path().into(),
                reason: "keyring header is damaged or belongs to another vault".into(),
            });
        }
        let n = ((len - KEYRING_HEADER as u64) / RECORD_SIZE as u64) as usize;
        let mut buf = vec![0u8; n * RECORD_SIZE];
        storage.read_at(KEYRING_HEADER as u64, &mut buf).map_err(io)?;
        let mut entries = Vec::with_capacity(n);
        let mut by_patient = HashMap::with_capacity(n);
        for (i, rec) in buf.chunks_exact(RECORD_SIZE).enumerate() {
            let e = match codec::decode_record(&keys.keyring, &vid, i as u32, rec) {
                Some(Record::Live { patient, key }) => {
                    by_patient.insert(patient.clone(), i as u32);
                    Entry::Live { patient, key }
                }
                Some(Record::Destroyed) => Entry::Destroyed,
                None => Entry::Damaged,
            };
            entries.push(e);
        }
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(Keyring { storage, entries, by_patient })
    }

    /// The record number of a patient, if known.
    pub fn slot_of(&self, patient: &str) -> Option<u32> {
        self.by_patient.get(patient).copied()
    }

    /// The entry at `slot`.
    pub fn entry(&self, slot: u32) -> Option<&Entry> {
        self.entries.get(slot as usize)
    }

    /// The patient key at `slot`, or the reason it cannot be had.
    pub fn key(&self, slot: u32, offset: u64) -> Result<&SecretKey> {
        match self.entries.get(slot as usize) {
            Some(Entry::Live { key, .. }) => Ok(key),
            Some(Entry::Destroyed) => Err(Error::Erased),
            _ => Err(Error::Integrity { what: "patient key", offset }),
        }
    }

    /// The patient id at `slot`, if live.
    pub fn patient(&self, slot: u32) -> Option<&str> {
        match self.entries.get(slot as usize) {
            Some(Entry::Live { patient, .. }) => Some(patient),
            _ => None,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the keyring has no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every live patient with their slot.
    pub fn patients(&self) -> impl Iterator<Item = (&str, u32)> {
        self.by_patient.iter().map(|(p, s)| (p.as_str(), *s))
    }

    /// Writes new patient records, fsyncs the keyring file, and adds them to memory;
    /// done before the log frames that use them are committed.
    pub fn append(&mut self, keys: &KeyHierarchy, new: Vec<(String, SecretKey)>) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let first = self.entries.len() as u32;
        let mut buf = Vec::with_capacity(new.len() * RECORD_SIZE);
        for (i, (p, k)) in new.iter().enumerate() {
            buf.extend_from_slice(&codec::encode_record(&keys.keyring, &keys.vault_id(), first + i as u32, p, k));
        }
        let off = KEYRING_HEADER as u64 + u64::from(first) * RECORD_SIZE as u64;
        self.storage.write_at(off, &buf).map_err(|e| Error::io(self.storage.path(), e))?;
        self.storage.sync().map_err(|e| Error::io(self.storage.path(), e))?;
        // Copies, not moves: moving the keys out of `new` would leave them in its buffer
        // when it is freed. Dropping `new` wipes them in place.
        for (i, (patient, key)) in new.iter().enumerate() {
            self.by_patient.insert(patient.clone(), first + i as u32);
            crate::crypto::keys::push_wiping(
                &mut self.entries,
                Entry::Live { patient: patient.clone(), key: key.clone() },
            );
        }
        Ok(())
    }

    /// Rewrites the records from slot `first` to the end of the file as they are and
    /// fsyncs the keyring, so that records read from the page cache are on disk.
    pub(crate) fn make_durable_from(&self, first: u32) -> Result<()> {
        let io = |e| Error::io(self.storage.path(), e);
        let len = self.storage.len().map_err(io)?;
        let from = KEYRING_HEADER as u64 + u64::from(first) * RECORD_SIZE as u64;
        if from >= len {
            return Ok(());
        }
        let mut buf = vec![
            0u8;
            usize::try_from(len - from).map_err(|_| Error::TooLarge {
                what: "keyring",
                size: len,
                limit: usize::MAX as u64
            })?
        ];
        self.storage.read_at(from, &mut buf).map_err(io)?;
        self.storage.write_at(from, &buf).map_err(io)?;
        self.storage.sync().map_err(io)
    }

    /// The slot the next new patient will get, `n` patients from now.
    pub fn next_slot(&self, n: usize) -> u32 {
        (self.entries.len() + n) as u32
    }

    /// Destroys the key at `slot` in place and fsyncs: every record of that patient
    /// becomes unreadable in every copy of the log.
    pub fn destroy(&mut self, slot: u32) -> Result<()> {
        let Some(e) = self.entries.get_mut(slot as usize) else {
            return Err(Error::InvalidArgument("no such patient key".into()));
        };
        let off = KEYRING_HEADER as u64 + u64::from(slot) * RECORD_SIZE as u64;
        self.storage.write_at(off, &codec::destroyed_record()).map_err(|e| Error::io(self.storage.path(), e))?;
        self.storage.sync().map_err(|e| Error::io(self.storage.path(), e))?;
        if let Entry::Live { patient, .. } = e {
            self.by_patient.remove(patient.as_str());
        }
        *e = Entry::Destroyed;
        Ok(())
    }
}
