//! The public entry point: a [`Vault`] holds the engine, the policy, patient rules and
//! the audit trail; every document access goes through a [`Session`].

mod admin;
pub(crate) mod session;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::access::{PatientRules, Policy};
use crate::audit::trail::{self, ChainPos};
use crate::audit::{AuditEntry, ledger};
use crate::crypto::{KdfParams, SecretKey, aead};
use crate::error::{Error, Result};
use crate::format::body;
use crate::format::frame::FrameType;
use crate::format::header::Unlock;
use crate::model::Schema;
use crate::store::batch::CommitInfo;
use crate::store::{Batch, OpenReport, Store};

pub use admin::DisclosureRequest;
pub use session::{Session, SessionBatch};

/// How a vault is unlocked.
#[derive(Clone, Copy)]
pub enum VaultKey<'a> {
    /// A passphrase (stretched with Argon2id).
    Passphrase(&'a [u8]),
    /// A raw 32-byte key from a keystore, HSM or KMS.
    Raw(&'a SecretKey),
}

impl std::fmt::Debug for VaultKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VaultKey::Passphrase(_) => "VaultKey::Passphrase(<redacted>)",
            VaultKey::Raw(_) => "VaultKey::Raw(<redacted>)",
        })
    }
}

impl<'a> VaultKey<'a> {
    fn unlock(self) -> Unlock<'a> {
        match self {
            VaultKey::Passphrase(p) => Unlock::Passphrase(p),
            VaultKey::Raw(k) => Unlock::RawKey(k),
        }
    }
}

/// Options for creating or opening a vault.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// The schema (labels and indexed fields). Default: [`Schema::hospital_default`].
    pub schema: Schema,
    /// KDF cost for passphrase slots created by this handle.
    pub kdf: KdfParams,
    /// The policy written at creation. Default: [`Policy::hospital_default`].
    pub initial_policy: Policy,
    /// Audit entries about reads are made durable within this window
    /// (or sooner, with the next write or when `audit_max_pending` is reached). The
    /// background thread that commits them wakes once per window; when it finds that
    /// no commit has written documents for 100 ms, it also adds the documents written
    /// since the last query to the value indexes, so the next query need not.
    pub audit_window: Duration,
    /// When this many read-audit entries wait, the background flusher commits them at
    /// once (the reader goes on); a reader waits for the writer and commits them itself
    /// if twice as many are waiting (the flusher fell behind), so readers are held back
    /// to the rate at which entries are sealed.
    pub audit_max_pending: usize,
    /// Open read-only (no lock; serves verify, head and audit reports).
    pub read_only: bool,
    /// Let sessions on a read-only handle read clinical content. Such reads cannot be
    /// audited (a read-only handle cannot append to the log), so this is off by
    /// default and meant for recovery and inspection tools; audit reports and
    /// verification work on read-only handles regardless.
    pub read_only_reads: bool,
    /// Write an index checkpoint after this many new document versions, or after as
    /// many as the previous checkpoint held if that is more (geometric spacing); 0:
    /// never automatically ([`Vault::checkpoint`] still works).
    pub checkpoint_every: u64,
    /// [`Vault::close`] of the last handle writes a checkpoint if at least this many
    /// document versions, and at least an eighth of the vault's versions, were added
    /// since the newest one (counting those the open replayed); 0: never. The
    /// automatic checkpoints alone can leave up to half the vault's versions after
    /// the newest one (geometric spacing), and an open replays each (about 8 µs on
    /// one core): a 1,000,000-document vault loaded in one go reopened in 1.6 s
    /// instead of 0.12 s. A checkpoint rewrites the whole catalog (about 1-2.5 µs per
    /// version), hence the eighth: closing never costs more than a few times the
    /// replay it spares the next open, and every later open is spared it too.
    pub checkpoint_at_close: u64,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            schema: Schema::default(),
            kdf: KdfParams::DEFAULT,
            initial_policy: Policy::hospital_default(),
            audit_window: Duration::from_millis(500),
            audit_max_pending: 8192,
            read_only: false,
            read_only_reads: false,
            checkpoint_every: 50_000,
            checkpoint_at_close: 4096,
        }
    }
}

/// [`VaultOptions::checkpoint_at_close`]: close writes a checkpoint only if the
/// versions added since the newest one are at least this fraction (1/n) of all.
const CLOSE_CHECKPOINT_FRACTION: u64 = 8;

struct AuditState {
    pending: Vec<AuditEntry>,
    oldest_us: i64,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) policy: RwLock<Policy>,
    pub(crate) rules: RwLock<HashMap<String, PatientRules>>,
    audit: Mutex<AuditState>,
    /// The audit trail's chain position. Only committers touch it, and they hold it
    /// from before they take the pending entries until after the commit is written
    /// (and the writer released), so the next committer always starts from the
    /// position the last one left; readers never wait for it.
    audit_pos: Mutex<ChainPos>,
    pub(crate) options: VaultOptions,
    checkpointed_versions: std::sync::atomic::AtomicU64,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// Time (Unix µs) of the oldest pending read-audit entry, 0 when none: lets the
    /// flusher thread decide without touching the vault.
    pending_since: Arc<std::sync::atomic::AtomicI64>,
    /// Set by a reader that found `audit_max_pending` read entries waiting: the
    /// flusher commits them at once instead of at the end of the window.
    flush_requested: Arc<std::sync::atomic::AtomicBool>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// An open vault. Cheap to clone (shared handle); safe to use from many threads.
///
/// ```
/// use chartvault::{Vault, VaultKey, VaultOptions, KdfParams, NewDocument, Value, SecretKey};
/// use chartvault::access::{Principal, Purpose, Role};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("demo.cv");
/// let key = SecretKey::random(); // in an app: from Keychain / Android Keystore
/// let vault = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default())?;
/// let dr = vault.session(
///     Principal::new("dr.grey", Role::physician(), "general", Purpose::Treat).with_care_team(["MRN-7"]),
/// )?;
/// let id = dr.put(&NewDocument::new("MRN-7", "Observation")?
///     .with("value", Value::Decimal("6.8".parse().unwrap())))?;
/// assert_eq!(dr.get(&id)?.get("value"), Some(&Value::Decimal("6.8".parse().unwrap())));
///
/// let billing = vault.session(Principal::new("bob", Role::billing(), "general", Purpose::Payment))?;
/// assert!(billing.get(&id).is_ok()); // normal-labelled lab values are visible for payment
/// # Ok::<(), chartvault::Error>(())
/// ```
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("path", &self.inner.store.path()).finish_non_exhaustive()
    }
}

fn policy_aad(vid: &[u8; 16], version: u32) -> Vec<u8> {
    aead::aad("chartvault policy v1", &[vid, &version.to_le_bytes()])
}
fn rules_aad(vid: &[u8; 16]) -> Vec<u8> {
    aead::aad("chartvault patient rules v1", &[vid])
}

impl Vault {
    /// Creates a new vault at `path` (a keyring file `<path>.keyring` is created beside it).
    pub fn create(path: &Path, key: VaultKey<'_>, options: VaultOptions) -> Result<Vault> {
        options.initial_policy.validate()?;
        let store = Store::create(path, &key.unlock(), options.kdf, options.schema.clone())?;
        Self::init_new(store, options)
    }

    /// Creates a vault on caller-supplied storage (fault-injection tests).
    pub fn create_on(
        data: Arc<dyn crate::log::Storage>,
        keyring: Arc<dyn crate::log::Storage>,
        key: VaultKey<'_>,
        options: VaultOptions,
    ) -> Result<Vault> {
        let store = Store::create_on(data, keyring, &key.unlock(), options.kdf, options.schema.clone(), 0)?;
        Self::init_new(store, options)
    }

    fn init_new(store: Store, options: VaultOptions) -> Result<Vault> {
        let mut policy = options.initial_policy.clone();
        policy.version = 1;
        let v = Self::assemble(store, policy.clone(), HashMap::new(), ChainPos::default(), options);
        let sys = crate::access::Principal::new(
            "chartvault",
            crate::access::Role::security_admin(),
            "",
            crate::access::Purpose::SystemAdmin,
        );
        let mut b = v.inner.store.batch()?;
        v.inner.stage_policy(&mut b, &policy)?;
        let e = AuditEntry::new(&sys, crate::audit::Action::VaultCreate, crate::audit::Outcome::Success)
            .detail(format!("policy {} version 1", policy.name));
        v.inner.commit_with_audit(b, vec![e])?;
        Ok(v)
    }

    /// Opens an existing vault.
    pub fn open(path: &Path, key: VaultKey<'_>, options: VaultOptions) -> Result<Vault> {
        let store = Store::open(path, &key.unlock(), options.read_only, options.schema.clone(), &mut |_| Ok(()))?;
        Self::load(store, options)
    }

    /// Opens a vault on caller-supplied storage (fault-injection tests).
    pub fn open_on(
        data: Arc<dyn crate::log::Storage>,
        keyring: Arc<dyn crate::log::Storage>,
        key: VaultKey<'_>,
        options: VaultOptions,
    ) -> Result<Vault> {
        let store =
            Store::open_on(data, keyring, &key.unlock(), options.read_only, options.schema.clone(), &mut |_| Ok(()))?;
        Self::load(store, options)
    }

    fn load(store: Store, options: VaultOptions) -> Result<Vault> {
        let st = store.read_state();
        let map = st.map.clone();
        let policy_off = st.catalog.frames_of(FrameType::Policy).last().copied();
        let admin_offs = st.catalog.frames_of(FrameType::Admin).to_vec();
        drop(st);
        let vid = store.vault_id();
        let policy = match policy_off {
            Some(off) => {
                let p = store.read_frame(&*map, off, FrameType::Policy)?;
                if p.len() < 4 {
                    return Err(Error::Integrity { what: "policy", offset: off });
                }
                let version = crate::format::le_u32(&p, 0);
                let pt = aead::open(&store.keys().system, &policy_aad(&vid, version), &p[4..])
                    .map_err(|_| Error::Integrity { what: "policy", offset: off })?;
                let json: String = body::decode(&pt, "policy", off)?;
                let mut pol = Policy::from_json(&json)?;
                pol.version = version;
                pol
            }
            None => {
                let mut p = Policy::hospital_default();
                p.version = 0;
                p
            }
        };
        let mut rules = HashMap::new();
        for off in admin_offs {
            let p = store.read_frame(&*map, off, FrameType::Admin)?;
            let pt = aead::open(&store.keys().system, &rules_aad(&vid), &p)
                .map_err(|_| Error::Integrity { what: "patient rules", offset: off })?;
            let r: String = body::decode(&pt, "patient rules", off)?;
            let r: PatientRules =
                serde_json::from_str(&r).map_err(|_| Error::Integrity { what: "patient rules", offset: off })?;
            rules.insert(r.patient.clone(), r);
        }
        let pos = trail::position(&store)?;
        Ok(Self::assemble(store, policy, rules, pos, options))
    }

    fn assemble(
        store: Store,
        policy: Policy,
        rules: HashMap<String, PatientRules>,
        pos: ChainPos,
        options: VaultOptions,
    ) -> Vault {
        // The versions the open replayed after the checkpoint count as added since it.
        let versions = store.read_state().catalog.versions.saturating_sub(store.open_report().replayed_versions);
        let inner = Arc::new(Inner {
            checkpointed_versions: std::sync::atomic::AtomicU64::new(versions),
            store,
            policy: RwLock::new(policy),
            rules: RwLock::new(rules),
            audit: Mutex::new(AuditState { pending: Vec::new(), oldest_us: 0 }),
            audit_pos: Mutex::new(pos),
            options,
            stop: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            flusher: Mutex::new(None),
            pending_since: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            flush_requested: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        });
        Inner::start_flusher(&inner);
        Vault { inner }
    }

    /// Opens a session for `principal`. Every document access goes through a session.
    pub fn session(&self, principal: crate::access::Principal) -> Result<Session> {
        Session::open(self.inner.clone(), principal)
    }

    /// (commit number, hash-chain value) of the last commit. Keep it outside the vault
    /// (for example in the app's keychain) and compare on the next open to detect a
    /// file rolled back to an older copy.
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.inner.store.head()
    }

    /// What open found (torn tail discarded, damaged header copy, ...).
    pub fn open_report(&self) -> &OpenReport {
        self.inner.store.open_report()
    }

    /// Verifies every frame, commit, MAC and sealed part of the file.
    pub fn verify(&self) -> Result<crate::store::verify::VerifyReport> {
        self.inner.store.verify()
    }

    /// Writes an index checkpoint now, so the next open starts from it instead of
    /// decrypting every document's index terms. Returns its offset.
    pub fn checkpoint(&self) -> Result<u64> {
        self.inner.checkpoint()
    }

    /// Makes pending read-audit entries durable now.
    pub fn flush_audit(&self) -> Result<()> {
        self.inner.flush_audit()
    }

    /// The engine (for tools, benchmarks and tests that work below the session layer).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Whether an earlier I/O failure has latched writes off.
    pub fn is_latched(&self) -> bool {
        self.inner.store.is_latched()
    }

    /// Number of committed document versions and distinct documents.
    pub fn stats(&self) -> (u64, usize) {
        let st = self.inner.store.read_state();
        (st.catalog.versions, st.catalog.docs.len())
    }

    /// Flushes pending audit entries and closes this handle. Other clones and open
    /// sessions keep the vault open; the last one to go releases the file. Closing
    /// the last handle first writes a checkpoint if enough versions were added since
    /// the newest one ([`VaultOptions::checkpoint_at_close`]), so the next open does
    /// not replay them; if writing it fails, `close` returns that error (everything
    /// committed stays durable, and the file is released all the same). Dropping a
    /// handle without `close` flushes the audit entries but writes no checkpoint.
    pub fn close(self) -> Result<()> {
        self.inner.flush_audit()?;
        // The audit flusher holds the vault while it flushes, so the handle count alone
        // cannot tell whether this is the last handle: stop the flusher (waiting for a
        // flush in progress) first. If other handles (clones, sessions) remain, they
        // still need it, so it is started again; otherwise the vault (and its file lock)
        // is released when this handle drops, before `close` returns.
        self.inner.stop_flusher();
        if Arc::strong_count(&self.inner) > 1 {
            Inner::start_flusher(&self.inner);
            return Ok(());
        }
        self.inner.checkpoint_at_close()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_flusher();
        let _ = self.flush_audit();
    }
}

thread_local! {
    static IN_FLUSHER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Inner {
    /// Starts the audit flusher thread of a read-write vault (clearing an earlier stop
    /// request, so a flusher stopped by [`Vault::close`] can be started again).
    fn start_flusher(inner: &Arc<Inner>) {
        if inner.store.is_read_only() {
            return;
        }
        *inner.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
        let h = spawn_flusher(
            Arc::downgrade(inner),
            inner.stop.clone(),
            inner.pending_since.clone(),
            inner.flush_requested.clone(),
            inner.options.audit_window,
        );
        *inner.flusher.lock().unwrap_or_else(|e| e.into_inner()) = h;
    }

    /// Stops the audit flusher thread and waits for it (unless called on it).
    fn stop_flusher(&self) {
        let (m, c) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        c.notify_all();
        if let Some(h) = self.flusher.lock().unwrap_or_else(|e| e.into_inner()).take()
            && !IN_FLUSHER.with(std::cell::Cell::get)
        {
            let _ = h.join();
        }
    }
}

/// How long no commit may have written documents before the background thread adds
/// the documents waiting for the value indexes (see [`Store::catch_up_indexes`]).
const INDEX_CATCH_UP_IDLE: Duration = Duration::from_millis(100);

/// Starts the vault's background thread: it commits waiting read-audit entries at the
/// end of each audit window (or at once when a reader asks), and when writes pause it
/// brings the value indexes up to date.
fn spawn_flusher(
    weak: Weak<Inner>,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    pending_since: Arc<std::sync::atomic::AtomicI64>,
    flush_requested: Arc<std::sync::atomic::AtomicBool>,
    window: Duration,
) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("chartvault-audit".into())
        .spawn(move || {
            IN_FLUSHER.with(|f| f.set(true));
            loop {
                {
                    let (m, c) = &*stop;
                    let g = m.lock().unwrap_or_else(|e| e.into_inner());
                    // A stop requested before this thread first took the lock (or while it
                    // was flushing) has already been notified: waiting would miss it and
                    // hold up the closing thread, which joins this one, for a whole window.
                    if *g {
                        return;
                    }
                    // A request made while this thread was flushing is served without
                    // waiting (requests are made under this lock, so none is missed).
                    if !flush_requested.load(std::sync::atomic::Ordering::Acquire) {
                        let (g, _) = c.wait_timeout(g, window).unwrap_or_else(|e| e.into_inner());
                        if *g {
                            return;
                        }
                    }
                }
                let asked = flush_requested.swap(false, std::sync::atomic::Ordering::AcqRel);
                let since = pending_since.load(std::sync::atomic::Ordering::Acquire);
                let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
                let audit_due = asked || (since != 0 && crate::util::now_micros() - since >= window_us);
                let Some(inner) = weak.upgrade() else { return };
                // A commit waiting for the writer takes every pending entry with it:
                // competing with it for the writer could only delay it.
                if audit_due && !inner.store.writer_awaited() {
                    let _ = inner.flush_audit();
                }
                // Writes have paused: bring the value indexes up to date now rather than
                // in the next query.
                inner.store.catch_up_indexes(INDEX_CATCH_UP_IDLE);
            }
        })
        .ok()
}

impl Inner {
    fn lock_audit(&self) -> std::sync::MutexGuard<'_, AuditState> {
        self.audit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an audit entry. Entries about reads wait (bounded by the window and
    /// the pending limit); all others are committed at once.
    pub(crate) fn audit(&self, e: AuditEntry) -> Result<()> {
        if self.store.is_read_only() {
            return Ok(());
        }
        let (flush_now, ask_flusher) = {
            let mut a = self.lock_audit();
            if a.pending.is_empty() {
                a.oldest_us = e.time_us;
                self.pending_since.store(e.time_us.max(1), std::sync::atomic::Ordering::Release);
            }
            let is_read = e.action.is_read() && e.outcome == crate::audit::Outcome::Success;
            a.pending.push(e);
            let max = self.options.audit_max_pending;
            // A full batch of read entries goes to the flusher thread, so the reader does
            // not seal and fsync it; only if the flusher falls behind by another batch
            // does the reader commit them itself.
            let n = a.pending.len();
            if !is_read {
                (true, false)
            } else if n < max {
                (false, false)
            } else if self.flusher.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                (n >= max.saturating_mul(2), true)
            } else {
                (true, false)
            }
        };
        if ask_flusher && !flush_now {
            let (m, c) = &*self.stop;
            let _g = m.lock().unwrap_or_else(|e| e.into_inner());
            self.flush_requested.store(true, std::sync::atomic::Ordering::Release);
            c.notify_all();
            return Ok(());
        }
        if !flush_now {
            return Ok(());
        }
        // If this thread holds the writer (a batch of its own), the entries stay pending
        // and commit with that batch.
        if Store::writer_held_here() {
            return Ok(());
        }
        // Twice `audit_max_pending` read entries wait (the flusher is behind): the reader
        // waits for the writer and commits them, so readers cannot add entries faster
        // than they are sealed. Other entries commit now if the writer is free, or with
        // the commit that holds or waits for it.
        let b = if ask_flusher { Some(self.store.batch()?) } else { self.store.try_batch()? };
        match b {
            // Another reader's commit may have taken them while this one waited.
            Some(b) if !self.lock_audit().pending.is_empty() => self.commit_with_audit(b, Vec::new()).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Commits every pending audit entry.
    pub(crate) fn flush_audit(&self) -> Result<()> {
        if self.store.is_read_only() || self.lock_audit().pending.is_empty() {
            return Ok(());
        }
        let b = self.store.batch()?;
        self.commit_with_audit(b, Vec::new()).map(|_| ())
    }

    /// Commits a batch together with `entries` and every pending audit entry, so
    /// entries about writes are durable with the data they describe.
    ///
    /// The audit lock is held only to take the pending entries and to put the outcome
    /// back, not while they are sealed and the commit is written and fsynced: readers
    /// keep adding entries meanwhile (they go into the next commit). The chain position
    /// has its own lock, held throughout, since the writer `b` holds is released inside
    /// `b.commit()`, before the new position is stored.
    pub(crate) fn commit_with_audit(&self, mut b: Batch<'_>, entries: Vec<AuditEntry>) -> Result<CommitInfo> {
        // Held to the end: `b.commit()` releases the writer before this returns.
        let mut pos_guard = self.audit_pos.lock().unwrap_or_else(|e| e.into_inner());
        let mut pos = *pos_guard;
        let (n_pending, mut all) = {
            let mut a = self.lock_audit();
            // The next pending list starts with room for as many entries as this one
            // had: growing it again read by read reallocates ever larger buffers, and
            // each large free makes malloc consolidate its free lists (`store::scratch`).
            let n_pending = a.pending.len();
            let all: Vec<AuditEntry> = std::mem::replace(&mut a.pending, Vec::with_capacity(n_pending));
            (n_pending, all)
        };
        all.extend(entries);
        // One audit frame (one seal) for all of them, unless they are very many.
        let sealed = trail::seal(self.store.keys(), &mut all, &mut pos);
        let staged = sealed.iter().try_for_each(|p| b.append_frame(FrameType::Audit, p).map(|_| ()));
        let result = staged.and_then(|()| b.commit());
        let mut a = self.lock_audit();
        match result {
            Ok(info) => {
                *pos_guard = pos;
                if a.pending.is_empty() {
                    self.pending_since.store(0, std::sync::atomic::Ordering::Release);
                }
                Ok(info)
            }
            Err(e) => {
                // Keep the read entries for the next attempt; the chain position is unchanged.
                let mut back: Vec<AuditEntry> = all.into_iter().take(n_pending).collect();
                back.append(&mut a.pending);
                a.pending = back;
                Err(e)
            }
        }
    }

    pub(crate) fn checkpoint(&self) -> Result<u64> {
        let versions = self.store.read_state().catalog.versions;
        let off = self.store.checkpoint()?;
        self.checkpointed_versions.store(versions, std::sync::atomic::Ordering::Relaxed);
        Ok(off)
    }

    /// Writes a checkpoint if `checkpoint_at_close` versions or more, and an eighth of
    /// all, were added since the last one (see [`VaultOptions::checkpoint_at_close`]);
    /// nothing on a read-only or latched handle.
    fn checkpoint_at_close(&self) -> Result<()> {
        let min = self.options.checkpoint_at_close;
        if min == 0 || self.store.is_read_only() || self.store.is_latched() {
            return Ok(());
        }
        let versions = self.store.read_state().catalog.versions;
        let last = self.checkpointed_versions.load(std::sync::atomic::Ordering::Relaxed);
        let added = versions.saturating_sub(last);
        if added >= min && added.saturating_mul(CLOSE_CHECKPOINT_FRACTION) >= versions {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Writes a checkpoint if enough versions were added since the last one.
    pub(crate) fn maybe_checkpoint(&self) -> Result<()> {
        // Geometric spacing: the next checkpoint comes after `every` new versions or as
        // many versions as the last one held, whichever is more, so rewriting the
        // catalog costs O(n) over the life of the vault rather than O(n^2).
        let every = self.options.checkpoint_every;
        let versions = self.store.read_state().catalog.versions;
        let last = self.checkpointed_versions.load(std::sync::atomic::Ordering::Relaxed);
        if every > 0 && versions.saturating_sub(last) >= every.max(last) {
            self.checkpoint()?;
        }
        Ok(())
    }

    pub(crate) fn stage_policy(&self, b: &mut Batch<'_>, p: &Policy) -> Result<()> {
        let vid = self.store.vault_id();
        let mut payload = p.version.to_le_bytes().to_vec();
        aead::seal(&self.store.keys().system, &policy_aad(&vid, p.version), &body::encode(&p.to_json()), &mut payload);
        b.append_frame(FrameType::Policy, &payload)?;
        Ok(())
    }

    pub(crate) fn stage_rules(&self, b: &mut Batch<'_>, r: &PatientRules) -> Result<()> {
        let vid = self.store.vault_id();
        let json = serde_json::to_string(r).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut payload = Vec::new();
        aead::seal(&self.store.keys().system, &rules_aad(&vid), &body::encode(&json), &mut payload);
        b.append_frame(FrameType::Admin, &payload)?;
        Ok(())
    }

    pub(crate) fn stage_disclosure(&self, b: &mut Batch<'_>, d: &crate::audit::Disclosure) -> Result<()> {
        b.append_frame(FrameType::Disclosure, &ledger::seal(self.store.keys(), d))?;
        Ok(())
    }
}
