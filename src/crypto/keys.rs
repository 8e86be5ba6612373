//! Key types and the key hierarchy.
//!
//! ```text
//! key slot (passphrase via Argon2id, or raw 32-byte key)
//!   └─ unwraps ─> root key (random, 32 bytes)
//!        ├─ meta key        seals document envelopes (kind, times, patient slot, labels)
//!        ├─ commit MAC key  authenticates commit frames
//!        ├─ audit key       seals audit entries and the disclosure ledger
//!        ├─ keyring key     seals patient keys in the keyring file
//!        ├─ system key      seals policy versions and patient rules
//!        ├─ index key       seals the global part of index checkpoints
//!        └─ label key (label, generation)
//! patient key (random per patient, in the keyring)
//! group key = derive(label keys of the group's labels, patient key)
//! ```
//! Derivation is BLAKE3 in its key-derivation mode with a distinct context string per
//! purpose, so no two purposes ever share a key.

use std::fmt;
use std::sync::{Arc, RwLock};

use rand::Rng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit secret key, wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw key bytes (for example a key from Keychain or Android Keystore).
    ///
    /// ```
    /// let key = chartvault::SecretKey::from_bytes([7u8; 32]);
    /// assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    /// ```
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Builds a key from a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey(arr))
    }

    /// A fresh key from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SecretKey(k)
    }

    /// The key bytes. Crate-internal: keys leave the library only as wrapped ciphertext.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives a sub-key for `context`, binding each of `parts` (length-prefixed).
    pub fn derive(&self, context: &str, parts: &[&[u8]]) -> SecretKey {
        self.derive_parts(blake3::Hasher::new_derive_key(context), parts.iter().copied())
    }

    /// [`SecretKey::derive`] from a hasher already set up for the context (a hot
    /// derivation clones one prepared hasher instead of hashing the context string each
    /// time; the output is the same).
    fn derive_parts<'p>(&self, mut h: blake3::Hasher, parts: impl Iterator<Item = &'p [u8]>) -> SecretKey {
        h.update(&self.0);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        SecretKey(finish(h))
    }

    /// A keyed BLAKE3 MAC of `data` under this key.
    pub fn mac(&self, data: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for d in data {
            h.update(d);
        }
        let mac = *h.finalize().as_bytes();
        h.zeroize();
        mac
    }
}

/// The 32-byte output of a derivation hasher; the hasher and its output reader, which
/// hold key bytes, are wiped.
fn finish(mut h: blake3::Hasher) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut reader = h.finalize_xof();
    reader.fill(&mut out);
    reader.zeroize();
    h.zeroize();
    out
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SecretKey {}

/// Constant-time equality of two byte strings (for MACs and hashes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The keys derived from a vault's root key.
#[derive(Clone)]
pub struct KeyHierarchy {
    root: SecretKey,
    vault_id: [u8; 16],
    /// Seals document envelopes.
    pub meta: SecretKey,
    /// Authenticates commit frames.
    pub commit_mac: SecretKey,
    /// Seals audit entries and disclosure-ledger entries.
    pub audit: SecretKey,
    /// Seals patient keys in the keyring.
    pub keyring: SecretKey,
    /// Seals policy versions and patient rules.
    pub system: SecretKey,
    /// Seals the global part of index checkpoints.
    pub index: SecretKey,
    /// Label keys derived so far, by (label, generation): every read and write needs
    /// them, and a derivation costs a few BLAKE3 compressions. Shared by clones.
    label_cache: Arc<RwLock<Vec<(String, u32, SecretKey)>>>,
    /// Group keys derived so far, by (patient slot, label set): see [`GroupKeyCache`].
    group_cache: Arc<RwLock<GroupKeyCache>>,
}

/// Group keys by patient slot, then interned label set. A patient's keys share one
/// entry, so reading a document (a key per label group) probes the table once: with
/// an entry per (slot, set), each of a document's four groups missed the cache on
/// its own probe (83% of `group_key_for`'s samples in a code query, `perf annotate`).
/// The table is allocated once at its full size and emptied (keys wiped on drop) when
/// full, so it never reallocates and never leaves key bytes in freed memory.
/// [`KeyHierarchy::forget_patient`] removes a patient's entry when its key is
/// destroyed.
struct GroupKeyCache {
    sets: Vec<Vec<(String, u32)>>,
    keys: std::collections::HashMap<u32, PatientGroupKeys, SlotHashState>,
    /// Slots whose patient key was destroyed: never cached again (a read that began
    /// before the erasure must not put a key back).
    forgotten: std::collections::BTreeSet<u32>,
}

/// Hashes the group-key cache's patient slots with one multiply instead of SipHash:
/// slots are assigned by the vault (one per patient, in order), never chosen by an
/// outside party, so there is no collision attack to defend against, and a read looks
/// one up per document.
type SlotHashState = std::hash::BuildHasherDefault<SlotHasher>;

/// The hasher of [`SlotHashState`].
#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits (which the table uses) depend on every bit.
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The (label, generation) pairs of a group; a missing generation is 1.
fn label_generations<'l>(
    labels: &'l [crate::model::Label],
    generations: &'l [u32],
) -> impl Iterator<Item = (&'l str, u32)> + 'l {
    let gens = generations.iter().copied().chain(std::iter::repeat(1));
    labels.iter().map(|l| l.as_str()).zip(gens)
}

/// Patients the group-key cache holds before it is emptied.
const GROUP_CACHE_PATIENTS: usize = 12 * 1024;

/// Label sets one patient's entry of the group-key cache holds keys for; the key of
/// another set replaces the one stored longest ago.
const SETS_PER_PATIENT: usize = 6;

/// One patient's cached group keys: the interned label set of each place (`u32::MAX`
/// when empty) and its key, in fixed arrays (no reallocation ever moves a key).
struct PatientGroupKeys {
    sets: [u32; SETS_PER_PATIENT],
    keys: [SecretKey; SETS_PER_PATIENT],
    /// The place the next new set takes.
    next: usize,
}

impl PatientGroupKeys {
    fn new() -> Self {
        PatientGroupKeys {
            sets: [u32::MAX; SETS_PER_PATIENT],
            keys: std::array::from_fn(|_| SecretKey::from_bytes([0; 32])),
            next: 0,
        }
    }

    /// The place holding `set`'s key, if any.
    fn place(&self, set: u32) -> Option<usize> {
        self.sets.iter().position(|&s| s == set)
    }

    fn get(&self, set: u32) -> Option<&SecretKey> {
        self.place(set).map(|i| &self.keys[i])
    }

    /// Stores `key` for `set`; the key it replaces is wiped as it drops.
    fn insert(&mut self, set: u32, key: SecretKey) {
        let i = match self.place(set) {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % SETS_PER_PATIENT;
                i
            }
        };
        self.sets[i] = set;
        self.keys[i] = key;
    }
}

impl GroupKeyCache {
    fn new() -> Self {
        GroupKeyCache {
            sets: Vec::new(),
            keys: std::collections::HashMap::with_capacity_and_hasher(GROUP_CACHE_PATIENTS, SlotHashState::default()),
            forgotten: std::collections::BTreeSet::new(),
        }
    }

    /// The id of the label set `labels` at `generations` (a missing generation is 1),
    /// compared in place (a read looks one up per label group, so it allocates nothing).
    fn set_id(&self, labels: &[crate::model::Label], generations: &[u32]) -> Option<u32> {
        self.sets
            .iter()
            .position(|s| {
                s.len() == labels.len()
                    && s.iter().zip(label_generations(labels, generations)).all(|((a, g), (b, h))| a == b && *g == h)
            })
            .map(|i| i as u32)
    }
}

impl fmt::Debug for KeyHierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHierarchy(<redacted>)")
    }
}

impl KeyHierarchy {
    /// Derives every purpose key from the root key of the vault `vault_id`.
    pub fn new(root: SecretKey, vault_id: [u8; 16]) -> Self {
        let d = |ctx: &str| root.derive(ctx, &[&vault_id]);
        KeyHierarchy {
            meta: d("chartvault 2026 meta key v1"),
            commit_mac: d("chartvault 2026 commit mac key v1"),
            audit: d("chartvault 2026 audit key v1"),
            keyring: d("chartvault 2026 keyring key v1"),
            system: d("chartvault 2026 system key v1"),
            index: d("chartvault 2026 index checkpoint key v1"),
            root,
            vault_id,
            label_cache: Arc::new(RwLock::new(Vec::new())),
            group_cache: Arc::new(RwLock::new(GroupKeyCache::new())),
        }
    }

    /// [`KeyHierarchy::group_key`] for the patient at keyring slot `slot`, remembered
    /// for the next read of the same patient and label set.
    pub fn group_key_for(
        &self,
        slot: u32,
        labels: &[crate::model::Label],
        generations: &[u32],
        patient_key: &SecretKey,
    ) -> SecretKey {
        {
            let c = self.group_cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = c.set_id(labels, generations).and_then(|id| c.keys.get(&slot)?.get(id)) {
                return k.clone();
            }
        }
        let key = self.group_key(labels, generations, patient_key);
        let mut c = self.group_cache.write().unwrap_or_else(|e| e.into_inner());
        if c.forgotten.contains(&slot) {
            return key;
        }
        let id = match c.set_id(labels, generations) {
            Some(id) => id,
            None if c.sets.len() < 1024 => {
                let set = label_generations(labels, generations).map(|(l, g)| (l.to_string(), g)).collect();
                c.sets.push(set);
                (c.sets.len() - 1) as u32
            }
            None => return key,
        };
        if c.keys.len() >= GROUP_CACHE_PATIENTS && !c.keys.contains_key(&slot) {
            c.keys.clear();
        }
        c.keys.entry(slot).or_insert_with(PatientGroupKeys::new).insert(id, key.clone());
        key
    }

    /// Drops every cached group key of the patient at `slot` (its key was destroyed).
    pub fn forget_patient(&self, slot: u32) {
        let mut c = self.group_cache.write().unwrap_or_else(|e| e.into_inner());
        c.keys.remove(&slot);
        c.forgotten.insert(slot);
    }

    /// The root key (for wrapping into a new key slot).
    pub(crate) fn root(&self) -> &SecretKey {
        &self.root
    }

    /// The vault id these keys belong to.
    pub fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    /// The key of sensitivity label `label` at key generation `generation`.
    pub fn label_key(&self, label: &str, generation: u32) -> SecretKey {
        self.root.derive("chartvault 2026 label key v1", &[&self.vault_id, label.as_bytes(), &generation.to_le_bytes()])
    }

    /// The key that seals one label group (labels with their generations; a missing
    /// generation is 1) of the patient whose key is `patient_key`: see [`group_key`].
    /// Label keys come from a cache, so this costs one BLAKE3 derivation.
    pub fn group_key(&self, labels: &[crate::model::Label], generations: &[u32], patient_key: &SecretKey) -> SecretKey {
        {
            let cache = self.label_cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = group_key_from_cache(&cache, labels, generations, patient_key) {
                return k;
            }
        }
        let mut cache = self.label_cache.write().unwrap_or_else(|e| e.into_inner());
        for (l, g) in label_generations(labels, generations) {
            if !cache.iter().any(|(cl, cg, _)| cl == l && *cg == g) {
                push_wiping(&mut cache, (l.to_string(), g, self.label_key(l, g)));
            }
        }
        // Every label key is in the cache now.
        group_key_from_cache(&cache, labels, generations, patient_key)
            .unwrap_or_else(|| unreachable!("label keys were just cached"))
    }
}

/// The group key of `labels` at `generations` for `patient_key` from the label keys in
/// `cache`, or `None` if one of them is missing. Allocates nothing.
fn group_key_from_cache(
    cache: &[(String, u32, SecretKey)],
    labels: &[crate::model::Label],
    generations: &[u32],
    patient_key: &SecretKey,
) -> Option<SecretKey> {
    let cached = |(l, g): (&str, u32)| cache.iter().find(|(cl, cg, _)| cl == l && *cg == g).map(|(_, _, k)| k);
    if !label_generations(labels, generations).all(|lg| cached(lg).is_some()) {
        return None;
    }
    Some(group_key_of(label_generations(labels, generations).filter_map(cached), patient_key))
}

/// The context of group keys, hashed once: every first read or write of a patient's
/// label group derives a group key from it.
static GROUP_KEY_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(GROUP_KEY_CONTEXT));

/// The derivation context of group keys.
const GROUP_KEY_CONTEXT: &str = "chartvault 2026 group key v1";

/// Pushes onto a vector holding secrets without leaving a copy behind. A plain `push`
/// that must grow the vector moves the elements to a new buffer and frees the old one
/// with the secrets still in it; here the old buffer is wiped before it is freed.
pub(crate) fn push_wiping<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        let mut bigger = Vec::with_capacity((v.capacity() * 2).max(4));
        bigger.append(v);
        // Every element has moved out, so the whole old buffer is spare capacity.
        let mut old = std::mem::replace(v, bigger);
        old.spare_capacity_mut().zeroize();
    }
    v.push(item);
}

/// The key that seals one label group of one patient: it needs every label key of the
/// group *and* the patient key, so destroying the patient key shreds the group.
pub fn group_key(label_keys: &[SecretKey], patient_key: &SecretKey) -> SecretKey {
    group_key_of(label_keys.iter(), patient_key)
}

/// `patient_key.derive(GROUP_KEY_CONTEXT, [label keys..., patient key])`, from the
/// context hashed once and without collecting the parts.
fn group_key_of<'k>(label_keys: impl Iterator<Item = &'k SecretKey>, patient_key: &'k SecretKey) -> SecretKey {
    let parts = label_keys.chain(std::iter::once(patient_key)).map(|k| &k.expose()[..]);
    patient_key.derive_parts(GROUP_KEY_HASHER.clone(), parts)
}

/// The key that seals a patient's index terms and checkpoint entries.
pub fn patient_index_key(patient_key: &SecretKey) -> SecretKey {
    patient_key.derive("chartvault 2026 patient index key v1", &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_differ_by_purpose_and_label() {
        let h = KeyHierarchy::new(SecretKey::from_bytes([1; 32]), [2; 16]);
        assert_ne!(h.meta, h.audit);
        assert_ne!(h.label_key("normal", 1), h.label_key("normal", 2));
        assert_ne!(h.label_key("normal", 1), h.label_key("restricted", 1));
        let h2 = KeyHierarchy::new(SecretKey::from_bytes([1; 32]), [3; 16]);
        assert_ne!(h.meta, h2.meta);
    }

    #[test]
    fn cached_group_key_equals_fresh_derivation() {
        use crate::model::Label;
        let h = KeyHierarchy::new(SecretKey::from_bytes([1; 32]), [2; 16]);
        let pk = SecretKey::from_bytes([5; 32]);
        let labels = [Label::demographics(), Label::normal()];
        let fresh = group_key(&[h.label_key("demographics", 1), h.label_key("normal", 2)], &pk);
        // The streamed derivation is the documented one: derive(context, [label keys, patient key]).
        let (d, n) = (h.label_key("demographics", 1), h.label_key("normal", 2));
        assert_eq!(fresh, pk.derive(GROUP_KEY_CONTEXT, &[d.expose(), n.expose(), pk.expose()]));
        for _ in 0..3 {
            assert_eq!(h.group_key(&labels, &[1, 2], &pk), fresh);
        }
        // A missing generation is 1; another generation is another key.
        assert_eq!(h.group_key(&labels[..1], &[], &pk), group_key(&[h.label_key("demographics", 1)], &pk));
        assert_ne!(h.group_key(&labels, &[1, 1], &pk), fresh);
        // Clones share the cache and agree.
        assert_eq!(h.clone().group_key(&labels, &[1, 2], &pk), fresh);
        // The per-patient cache returns the same key, and forgets a destroyed patient.
        assert_eq!(h.group_key_for(7, &labels, &[1, 2], &pk), fresh);
        assert_eq!(h.group_key_for(7, &labels, &[1, 2], &pk), fresh);
        h.forget_patient(7);
        let other = SecretKey::from_bytes([6; 32]);
        assert_ne!(h.group_key_for(7, &labels, &[1, 2], &other), fresh);
        // ... and never caches that slot again.
        assert!(!h.group_cache.read().unwrap().keys.contains_key(&7));
    }

    #[test]
    fn a_patients_group_keys_keep_the_latest_sets() {
        let k = |i: u8| SecretKey::from_bytes([i; 32]);
        let mut p = PatientGroupKeys::new();
        assert!(p.get(0).is_none() && p.get(u32::MAX - 1).is_none());
        for set in 0..SETS_PER_PATIENT as u32 {
            p.insert(set, k(set as u8));
        }
        // Storing a set again replaces its key in place.
        p.insert(2, k(200));
        assert_eq!(p.get(2).map(|x| x.0), Some([200; 32]));
        assert_eq!(p.get(0).map(|x| x.0), Some([0; 32]));
        // One set more replaces the one stored longest ago (set 0), and only it.
        p.insert(99, k(99));
        assert!(p.get(0).is_none());
        assert_eq!(p.get(99).map(|x| x.0), Some([99; 32]));
        for set in 1..SETS_PER_PATIENT as u32 {
            assert!(p.get(set).is_some(), "set {set}");
        }
    }

    #[test]
    fn push_wiping_keeps_order_and_grows() {
        let mut v = Vec::new();
        for i in 0..20u8 {
            push_wiping(&mut v, SecretKey::from_bytes([i; 32]));
        }
        assert_eq!(v.len(), 20);
        assert!(v.iter().enumerate().all(|(i, k)| *k == SecretKey::from_bytes([i as u8; 32])));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let h = KeyHierarchy::new(SecretKey::from_bytes([0xAB; 32]), [2; 16]);
        let s = format!("{h:?} {:?}", h.meta);
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab, "));
    }
}
