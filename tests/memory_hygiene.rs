//! Property: key material is wiped before the memory holding it is freed
//! (invariant 6, "secrets are zeroized").
//!
//! This test binary installs a global allocator that wraps the system allocator and,
//! while armed, inspects every block as it is freed (blocks a `realloc` moves away
//! from included). Two checks:
//!
//! 1. Known patterns, in every freed block of any size: a raw 32-byte vault key and a
//!    passphrase with distinctive bytes, and a distinctive 32-byte marker repeated
//!    through a 200 KiB attachment (whose plaintext only ever lives in the engine's
//!    zeroizing buffers: the chunk buffers of the upload and the AEAD output of the
//!    download). None may appear in a freed block.
//! 2. Patient keys, which are random: every freed block of up to 4 KiB is copied to
//!    a side arena, and after the workload each 32-byte window of the arena is
//!    compared with every patient key through a keyed-hash fingerprint
//!    (`SecretKey::mac`, so the test never holds the keys' bytes itself). No freed
//!    block may hold a patient key.
//!
//! The workload creates a vault with the raw key, adds a passphrase key slot,
//! reopens with each, adds patients one by one and several in one commit (so the
//! engine's vectors of keys grow), uploads and downloads the attachment, and closes
//! everything.
//!
//! Not covered: copies on the stack and in registers (an allocator cannot see them);
//! memory still allocated at the end; the root key and the keys derived from it
//! (label, meta, audit ... keys), which the public API cannot name; attachment data
//! keys and document field values, which live in ordinary (non-zeroizing) document
//! values, postcard buffers and JSON strings by design. The number of freed blocks
//! still holding a field-value marker is printed for information only.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chartvault::{KdfParams, NewDocument, SecretKey, Value, Vault, VaultKey, VaultOptions};
use common::{physician, security_admin};

/// The raw vault key.
const RAW_KEY: [u8; 32] = [
    0xA7, 0x3C, 0x91, 0x5E, 0x0F, 0xD2, 0x68, 0xB4, 0x17, 0xE9, 0x4A, 0xC6, 0x2B, 0x85, 0xF0, 0x73, 0x9D, 0x36, 0xCA,
    0x51, 0xE4, 0x08, 0xBF, 0x62, 0x1D, 0x97, 0x7A, 0xF3, 0x45, 0xAE, 0x0C, 0xD9,
];
/// A second vault's passphrase.
const PASSPHRASE: &[u8] = b"hygiene:Zq8#Vn3-Lp0w!Kt5@Rb7^Xs";
/// The passphrase of the slot added to the raw-key vault.
const SLOT_PASSPHRASE: &[u8] = b"slot-pass:Mw4$Hd9*Gf2&Jc6%Ty1+E";
/// Repeated through the attachment's content.
const ATTACHMENT_MARKER: [u8; 32] = *b"\xB1ATTACHMENT-PLAINTEXT-MARKER-\xC4\xD5\xE6";
/// In a document field (reported, not asserted).
const FIELD_MARKER: &str = "FIELD-VALUE-MARKER-91c2e7d45ab03";
const ATTACHMENT_LEN: usize = 200 * 1024;

const PATTERNS: [(&str, &[u8]); 4] = [
    ("raw key", &RAW_KEY),
    ("passphrase", PASSPHRASE),
    ("slot passphrase", SLOT_PASSPHRASE),
    ("attachment plaintext", &ATTACHMENT_MARKER),
];
const FIELD: usize = PATTERNS.len();

// ---- the inspecting allocator ----

static ARMED: AtomicBool = AtomicBool::new(false);
static FREED_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static FOUND: [AtomicUsize; PATTERNS.len() + 1] = [const { AtomicUsize::new(0) }; PATTERNS.len() + 1];
/// Size of the first freed block that held each pattern (diagnostics).
static FOUND_IN: [AtomicUsize; PATTERNS.len() + 1] = [const { AtomicUsize::new(0) }; PATTERNS.len() + 1];

/// Freed blocks of up to `ARENA_BLOCK` bytes, each as `len (u32 LE) || bytes`.
const ARENA_SIZE: usize = 48 * 1024 * 1024;
const ARENA_BLOCK: usize = 4096;
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);
// SAFETY: writers reserve disjoint ranges with `ARENA_USED.fetch_add`; the arena is
// read only after `ARMED` is cleared and every writer has finished.
unsafe impl Sync for Arena {}
static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);
static ARENA_OVERFLOW: AtomicBool = AtomicBool::new(false);

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs inside `dealloc`: must not allocate.
fn inspect(block: &[u8]) {
    FREED_BLOCKS.fetch_add(1, Ordering::Relaxed);
    let field: &[u8] = FIELD_MARKER.as_bytes();
    for (i, pat) in PATTERNS.iter().map(|p| p.1).chain([field]).enumerate() {
        if contains(block, pat) {
            FOUND[i].fetch_add(1, Ordering::Relaxed);
            let _ = FOUND_IN[i].compare_exchange(0, block.len(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
    if block.len() >= 32 && block.len() <= ARENA_BLOCK {
        let need = 4 + block.len();
        let at = ARENA_USED.fetch_add(need, Ordering::Relaxed);
        if at + need > ARENA_SIZE {
            ARENA_OVERFLOW.store(true, Ordering::Relaxed);
            return;
        }
        // SAFETY: `at..at + need` is reserved for this call alone and lies in the arena.
        unsafe {
            let base = (ARENA.0.get() as *mut u8).add(at);
            std::ptr::copy_nonoverlapping((block.len() as u32).to_le_bytes().as_ptr(), base, 4);
            std::ptr::copy_nonoverlapping(block.as_ptr(), base.add(4), block.len());
        }
    }
}

struct Inspecting;

// SAFETY: every call is forwarded to the system allocator unchanged; `dealloc` only
// reads the block before freeing it. `realloc` keeps the default (alloc, copy,
// dealloc), so blocks a reallocation leaves behind are inspected too.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() > 0 {
            // SAFETY: the block is live and `layout.size()` bytes long until freed below.
            inspect(unsafe { std::slice::from_raw_parts(ptr, layout.size()) });
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Inspecting = Inspecting;

// ---- the workload ----

/// The attachment's content, produced on the fly so the test never holds it in a
/// heap buffer of its own.
struct MarkedContent(usize);

impl Read for MarkedContent {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(ATTACHMENT_LEN - self.0);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ATTACHMENT_MARKER[(self.0 + i) % 32];
        }
        self.0 += n;
        Ok(n)
    }
}

/// Checks downloaded content against the marker without keeping it.
struct CheckContent(usize);

impl Write for CheckContent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(*b, ATTACHMENT_MARKER[(self.0 + i) % 32], "attachment byte {}", self.0 + i);
        }
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn opts() -> VaultOptions {
    VaultOptions { kdf: KdfParams::INSECURE_FOR_TESTS, ..VaultOptions::default() }
}

const PATIENTS: [&str; 9] = ["H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H9"];

fn note(patient: &str, n: usize) -> NewDocument {
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("value", Value::Integer(n as i64))
        .with("note", Value::Text(format!("{FIELD_MARKER} #{n}")))
}

/// Runs the workload; returns fingerprints of every patient key the vaults held.
fn workload(dir: &std::path::Path) -> HashSet<[u8; 32]> {
    let raw = SecretKey::from_bytes(RAW_KEY);
    let mut fingerprints = HashSet::new();
    let path = dir.join("raw.cv");
    {
        let v = Vault::create(&path, VaultKey::Raw(&raw), opts()).expect("create with the raw key");
        let sec = v.session(security_admin()).expect("session");
        sec.add_key_slot(VaultKey::Passphrase(SLOT_PASSPHRASE), KdfParams::INSECURE_FOR_TESTS).expect("add a slot");
        let dr = v.session(physician(PATIENTS)).expect("session");
        // Patients one at a time (the keyring grows past its first allocation) ...
        for (i, p) in PATIENTS[..5].iter().enumerate() {
            dr.put(&note(p, i)).expect("put");
        }
        // ... then four in one commit (the batch's list of new keys grows too).
        let mut b = dr.batch().expect("batch");
        for (i, p) in PATIENTS[5..].iter().enumerate() {
            b.put(&note(p, 10 + i)).expect("put");
        }
        let a = b.put_attachment("application/octet-stream", &mut MarkedContent(0)).expect("attachment");
        let id =
            b.put(&NewDocument::new("H1", "DocumentReference").unwrap().with("content", Value::from(a))).expect("put");
        b.commit().expect("commit");
        let mut check = CheckContent(0);
        dr.read_attachment(&id, "content", &mut check).expect("download");
        assert_eq!(check.0, ATTACHMENT_LEN);
        let st = v.store().read_state();
        for slot in 0..st.keyring.len() as u32 {
            fingerprints.insert(st.keyring.key(slot, 0).expect("live key").mac(&[b"fingerprint"]));
        }
        drop(st);
        drop((sec, dr));
        v.close().expect("close");
    }
    for key in [VaultKey::Raw(&raw), VaultKey::Passphrase(SLOT_PASSPHRASE)] {
        let v = Vault::open(&path, key, opts()).expect("reopen");
        let dr = v.session(physician(PATIENTS)).expect("session");
        assert_eq!(dr.chart("H3").expect("chart").len(), 1);
        drop(dr);
        v.close().expect("close");
    }
    let ppath = dir.join("pass.cv");
    {
        let v = Vault::create(&ppath, VaultKey::Passphrase(PASSPHRASE), opts()).expect("create with a passphrase");
        let dr = v.session(physician(PATIENTS)).expect("session");
        let mut b = dr.batch().expect("batch");
        for (i, p) in PATIENTS.iter().enumerate() {
            b.put(&note(p, 20 + i)).expect("put");
        }
        b.commit().expect("commit");
        let st = v.store().read_state();
        for slot in 0..st.keyring.len() as u32 {
            fingerprints.insert(st.keyring.key(slot, 0).expect("live key").mac(&[b"fingerprint"]));
        }
        drop(st);
        drop(dr);
        v.close().expect("close");
    }
    let v = Vault::open(&ppath, VaultKey::Passphrase(PASSPHRASE), opts()).expect("reopen with the passphrase");
    assert_eq!(v.stats().1, PATIENTS.len());
    v.close().expect("close");
    assert!(matches!(Vault::open(&ppath, VaultKey::Raw(&raw), opts()), Err(chartvault::Error::WrongKey)));
    fingerprints
}

/// Freed blocks in the arena, and the sizes of those that hold one of
/// `fingerprints`' keys.
fn blocks_with_keys(fingerprints: &HashSet<[u8; 32]>) -> (usize, Vec<usize>) {
    let used = ARENA_USED.load(Ordering::Relaxed).min(ARENA_SIZE);
    // SAFETY: the allocator is disarmed and no writer is left (see `Arena`).
    let arena: &[u8] = unsafe { std::slice::from_raw_parts(ARENA.0.get() as *const u8, used) };
    let (mut pos, mut blocks, mut hits) = (0, 0, Vec::new());
    while pos + 4 <= used {
        let len = u32::from_le_bytes(arena[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let block = &arena[pos + 4..(pos + 4 + len).min(used)];
        pos += 4 + len;
        blocks += 1;
        let leaked = block.windows(32).any(|w| {
            w[..8] != [0; 8]
                && fingerprints.contains(&SecretKey::from_slice(w).expect("32 bytes").mac(&[b"fingerprint"]))
        });
        if leaked {
            hits.push(block.len());
        }
    }
    (blocks, hits)
}

#[test]
fn key_material_is_wiped_before_its_memory_is_freed() {
    // The detector works: a block holding a pattern is seen when freed.
    ARMED.store(true, Ordering::SeqCst);
    let mut probe = vec![0u8; 100];
    probe[30..62].copy_from_slice(&RAW_KEY);
    drop(std::hint::black_box(probe));
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(FOUND[0].swap(0, Ordering::SeqCst), 1, "the detector sees a freed raw key");
    FOUND_IN[0].store(0, Ordering::SeqCst);
    ARENA_USED.store(0, Ordering::SeqCst);

    let dir = tempfile::tempdir().expect("temporary directory");
    ARMED.store(true, Ordering::SeqCst);
    let fingerprints = workload(dir.path());
    ARMED.store(false, Ordering::SeqCst);

    let freed = FREED_BLOCKS.load(Ordering::SeqCst);
    assert!(
        !ARENA_OVERFLOW.load(Ordering::SeqCst),
        "the arena overflowed: enlarge ARENA_SIZE so every block is checked"
    );
    let (blocks, key_blocks) = blocks_with_keys(&fingerprints);
    let found: Vec<(&str, usize, usize)> = PATTERNS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (*name, FOUND[i].load(Ordering::SeqCst), FOUND_IN[i].load(Ordering::SeqCst)))
        .collect();
    eprintln!(
        "{freed} freed blocks inspected, {blocks} small ones checked for {} patient keys; \
         freed blocks holding a field value (not asserted): {}",
        fingerprints.len(),
        FOUND[FIELD].load(Ordering::SeqCst)
    );
    assert!(fingerprints.len() >= 2 * PATIENTS.len() - 1, "the workload made its patient keys");
    assert!(freed > 1000 && blocks > 1000, "the workload freed memory while the detector was armed");
    for (name, count, size) in &found {
        assert_eq!(*count, 0, "{count} freed block(s) still held the {name} (first one {size} bytes)");
    }
    assert!(
        key_blocks.is_empty(),
        "{} freed block(s) still held a patient key (sizes {key_blocks:?})",
        key_blocks.len()
    );
}
