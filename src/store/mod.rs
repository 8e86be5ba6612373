//! The storage engine: one data file (header + append-only log) and one keyring file,
//! with in-memory indexes rebuilt at open. Everything above it (sessions, policy,
//! audit, queries) reaches the documents through this module.

pub mod batch;
pub mod catalog;
pub mod checkpoint;
pub mod keyring;
pub mod read;
pub mod record;
pub mod scratch;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::crypto::{KdfParams, KeyHierarchy, SecretKey};
use crate::error::{Error, Result};
use crate::format::envelope::{self, Envelope};
use crate::format::frame::{self, Commit, FrameType};
use crate::format::header::{HEADER_REGION, HEADER_SIZE, Header, HeaderError, KeySlot, MAX_SLOTS, Unlock};
use crate::log::scan::{self, ScanOutcome, ScannedFrame};
use crate::log::writer::LogHead;
use crate::log::{FileStorage, LogWriter, Region, Storage};
use crate::model::{Kind, LabelSet, Schema};

pub use batch::Batch;
pub use catalog::{Catalog, DocEntry, VersionLoc};
use catalog::{NewVersion, TermRegistry};
pub use keyring::Keyring;

/// The path of the keyring file that belongs to a data file.
pub fn keyring_path(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".keyring");
    PathBuf::from(s)
}

/// What open found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// A torn tail that was discarded: (offset, bytes, reason).
    pub torn_tail: Option<(u64, u64, &'static str)>,
    /// One header copy was damaged (the other was used).
    pub damaged_header: bool,
    /// Read-only opens of a corrupt file: where the damage is; only the part before it is served.
    pub corrupt: Option<(u64, String)>,
    /// Commits verified at open.
    pub commits: u64,
    /// Frames verified at open.
    pub frames: u64,
    /// Offset of the index checkpoint open started from, if one was used.
    pub checkpoint: Option<u64>,
    /// Why the checkpoint named in the header could not be used (open then rebuilt
    /// the indexes from the whole log).
    pub checkpoint_fallback: Option<String>,
    /// Document versions replayed from the log after the checkpoint (every version
    /// in the vault when open started from no checkpoint): what the next checkpoint
    /// would spare an open.
    pub replayed_versions: u64,
}

/// Records an open buffers before decrypting them together (on every core).
const REPLAY_BATCH: usize = 1024;
/// Most threads that decrypt records while an open replays the log.
const REPLAY_THREADS: usize = 2;
/// Fewest buffered records worth a second thread.
const REPLAY_PARALLEL_MIN: usize = 32;

/// State shared by readers, replaced under a write lock after each commit.
pub struct State {
    /// A view of the file covering at least every committed byte.
    pub map: Arc<dyn Region>,
    /// Log head after the last commit.
    pub head: LogHead,
    /// In-memory indexes.
    pub catalog: Catalog,
    /// Patient keys.
    pub keyring: Keyring,
    /// Sequence number of the last frame [`Store::refresh`] applied to the catalog,
    /// which may be past `head` after a refresh that failed part-way.
    pub(crate) refreshed_seq: u64,
}

/// The engine.
pub struct Store {
    path: PathBuf,
    data: Arc<dyn Storage>,
    keys: KeyHierarchy,
    header: Mutex<Header>,
    read_only: bool,
    writer: Mutex<Option<LogWriter>>,
    state: RwLock<State>,
    schema: Schema,
    report: OpenReport,
    /// Threads waiting in [`Store::batch`] (or for the writer otherwise): while one
    /// waits, [`Store::try_batch`] answers "busy", so threads that only try (readers
    /// committing read-audit entries) cannot keep taking the writer from those that
    /// wait for it.
    writer_waiters: AtomicUsize,
    /// When (Unix µs) a commit last applied document versions to the catalog: lets
    /// [`Store::catch_up_indexes`] tell a pause in the writes from a run of them.
    last_write_us: AtomicI64,
    /// The schema ids the catalog's index terms are packed under.
    terms: TermRegistry,
}

/// Frames of a verified commit, handed to the layers above at open.
pub type FrameHook<'a> = dyn FnMut(&ScannedFrame) -> Result<()> + 'a;

thread_local! {
    /// Writer guards this thread holds (a guard never leaves its thread).
    static WRITER_HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The store's writer, held: while it lives, this thread is known to hold the writer
/// ([`Store::writer_held_here`]), so code running on it (a read audited inside a batch)
/// does not wait for a writer it holds itself.
pub(crate) struct WriterGuard<'a>(MutexGuard<'a, Option<LogWriter>>);

impl<'a> WriterGuard<'a> {
    fn new(g: MutexGuard<'a, Option<LogWriter>>) -> Self {
        WRITER_HELD.with(|n| n.set(n.get() + 1));
        WriterGuard(g)
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        WRITER_HELD.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Option<LogWriter>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Creates a new vault at `path` (which must not exist), with one key slot.
    pub fn create(path: &Path, secret: &Unlock<'_>, kdf: KdfParams, schema: Schema) -> Result<Store> {
        kdf.validate()?;
        let kpath = keyring_path(path);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists(path.to_path_buf())
            } else {
                Error::io(path, e)
            }
        })?;
        lock_exclusive(&file, path)?;
        let kfile = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&kpath)
            .map_err(|e| Error::io(&kpath, e))?;
        let data: Arc<dyn Storage> = Arc::new(FileStorage::new(file, path.to_path_buf()));
        let kstore: Arc<dyn Storage> = Arc::new(FileStorage::new(kfile, kpath));
        let created = (crate::util::now_micros() / 1_000_000) as u64;
        let store = Self::create_on(data, kstore, secret, kdf, schema, created)?;
        sync_dir(path);
        Ok(store)
    }

    /// Creates a vault on the given storages (used directly by fault-injection tests).
    pub fn create_on(
        data: Arc<dyn Storage>,
        keyring: Arc<dyn Storage>,
        secret: &Unlock<'_>,
        kdf: KdfParams,
        schema: Schema,
        created: u64,
    ) -> Result<Store> {
        let root = SecretKey::random();
        let mut header = Header::new(created);
        header.slots[0] = Some(KeySlot::wrap(&root, &header.vault_id, secret, kdf)?);
        let enc = header.encode();
        let io = |e| Error::io(data.path(), e);
        data.write_at(0, &enc).map_err(io)?;
        data.write_at(HEADER_SIZE as u64, &enc).map_err(io)?;
        data.sync().map_err(io)?;
        let keys = KeyHierarchy::new(root, header.vault_id);
        let ring = Keyring::create(keyring, &header.vault_id)?;
        let head = Self::empty_head(&header.vault_id);
        let map = data.map().map_err(io)?;
        Ok(Store {
            path: data.path().to_path_buf(),
            writer: Mutex::new(Some(LogWriter::new(data.clone(), head))),
            data,
            keys,
            header: Mutex::new(header),
            read_only: false,
            state: RwLock::new(State { map, head, catalog: Catalog::default(), keyring: ring, refreshed_seq: 0 }),
            schema,
            report: OpenReport::default(),
            last_write_us: AtomicI64::new(0),
            terms: TermRegistry::default(),
            writer_waiters: AtomicUsize::new(0),
        })
    }

    fn empty_head(vault_id: &[u8; 16]) -> LogHead {
        LogHead { end: HEADER_REGION, next_seq: 1, commit_number: 0, chain: frame::chain_start(vault_id) }
    }

    /// Opens an existing vault.
    pub fn open(
        path: &Path,
        secret: &Unlock<'_>,
        read_only: bool,
        schema: Schema,
        hook: &mut FrameHook<'_>,
    ) -> Result<Store> {
        let kpath = keyring_path(path);
        let file = OpenOptions::new().read(true).write(!read_only).open(path).map_err(|e| Error::io(path, e))?;
        if !read_only {
            lock_exclusive(&file, path)?;
        }
        let kfile = OpenOptions::new().read(true).write(!read_only).open(&kpath).map_err(|e| Error::io(&kpath, e))?;
        let data: Arc<dyn Storage> = Arc::new(FileStorage::new(file, path.to_path_buf()));
        let kstore: Arc<dyn Storage> = Arc::new(FileStorage::new(kfile, kpath));
        Self::open_on(data, kstore, secret, read_only, schema, hook)
    }

    /// Opens a vault on the given storages.
    pub fn open_on(
        data: Arc<dyn Storage>,
        keyring: Arc<dyn Storage>,
        secret: &Unlock<'_>,
        read_only: bool,
        schema: Schema,
        hook: &mut FrameHook<'_>,
    ) -> Result<Store> {
        let path = data.path().to_path_buf();
        let io = |e| Error::io(&path, e);
        let len = data.len().map_err(io)?;
        if len < HEADER_REGION {
            return Err(Error::NotAVault { path: path.clone(), reason: "file is shorter than a vault header".into() });
        }
        let mut hb = vec![0u8; HEADER_REGION as usize];
        data.read_at(0, &mut hb).map_err(io)?;
        let (header, damaged_header) = match Header::choose(&hb[..HEADER_SIZE], &hb[HEADER_SIZE..]) {
            Ok(x) => x,
            Err(HeaderError::Magic) if &hb[HEADER_SIZE..HEADER_SIZE + 8] != crate::format::header::MAGIC => {
                return Err(Error::NotAVault { path: path.clone(), reason: "no chartvault magic number".into() });
            }
            Err(HeaderError::Version(v)) => {
                return Err(Error::UnsupportedVersion { found: v, supported: crate::format::header::FORMAT_VERSION });
            }
            Err(_) => return Err(Error::HeaderDamaged),
        };
        let (_, root) = header.unlock(secret)?;
        let keys = KeyHierarchy::new(root, header.vault_id);
        // Map the log before loading the keyring: keyring records are synced before the
        // commits that use them, so every patient a mapped commit names is loaded.
        let map = data.map().map_err(io)?;
        // Bytes after the log end change under the map while a writer overwrites its
        // zero reserve: a read-only open accepts only the frames already there now.
        let limit = if read_only {
            let from = if header.checkpoint_offset != 0 { header.checkpoint_offset } else { HEADER_REGION };
            scan::snapshot_end(map.bytes(), from)
        } else {
            u64::MAX
        };
        let schema_ref = &schema;
        let empty = Self::empty_head(&header.vault_id);
        // With a checkpoint, its frames are read and verified as a commit (no patient
        // key needed) while the keyring loads on another thread.
        let (ring, verified) = if header.checkpoint_offset != 0 {
            let cut = usize::try_from(limit).map_or(map.bytes().len(), |l| l.min(map.bytes().len()));
            let bytes = &map.bytes()[..cut];
            let keys = &keys;
            std::thread::scope(|s| {
                let ring = s.spawn(move || Keyring::load(keyring, keys));
                let verified = checkpoint::read_verified(keys, bytes, header.checkpoint_offset);
                let ring = ring.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                (ring, Some(verified))
            })
        } else {
            (Keyring::load(keyring, &keys), None)
        };
        let ring = ring?;
        let loaded = verified.map(|v| v.and_then(|v| checkpoint::load(&keys, &ring, v)));
        // Without a usable checkpoint the whole log is replayed into a catalog whose
        // value indexes are built on first use, as after a checkpoint load: replay then
        // only notes documents, and the indexes are bulk-built once, by the first query.
        let (mut catalog, start, cp_used, cp_fallback, cp_frames, terms) = match loaded {
            Some(Ok(l)) => (
                l.catalog,
                l.head,
                Some(header.checkpoint_offset),
                None,
                l.frames,
                TermRegistry::starting_from(l.schemas),
            ),
            Some(Err(e)) => (Catalog::lazy(), empty, None, Some(e.to_string()), 0, TermRegistry::default()),
            None => (Catalog::lazy(), empty, None, None, 0, TermRegistry::default()),
        };
        let versions_at_checkpoint = catalog.versions;
        // Verified frames wait here until REPLAY_BATCH records have come, then their
        // records are decrypted on every core and everything is applied in log order.
        let mut replay: Vec<(ScannedFrame, u64)> = Vec::new();
        let mut records = 0;
        let scanned = {
            let mut apply = |frames: &[ScannedFrame], c: &Commit| -> Result<()> {
                replay.extend(frames.iter().map(|f| (f.clone(), c.number)));
                records += frames.iter().filter(|f| f.ty == FrameType::Record).count();
                if records >= REPLAY_BATCH {
                    records = 0;
                    Self::apply_replayed(&keys, &ring, schema_ref, &terms, &mut catalog, &mut replay, hook)?;
                }
                Ok(())
            };
            scan::scan_until(map.bytes(), start, limit, &keys.commit_mac, &mut apply)
        };
        // Frames verified before a failure are applied first, so an error in one of
        // them is the one reported, as when each was applied at once.
        Self::apply_replayed(&keys, &ring, schema_ref, &terms, &mut catalog, &mut replay, hook)?;
        let outcome = scanned?;
        let ScanOutcome { head, torn_tail, corrupt, commits, frames, last_commit_start, .. } = outcome;
        let head = head.unwrap_or(start);
        // The checkpoint's own commit was verified by the loader (counted here like
        // the commits the scan verified).
        let cp_commits = u64::from(cp_used.is_some());
        let mut report = OpenReport {
            torn_tail,
            damaged_header,
            corrupt: None,
            commits: commits + cp_commits,
            frames: frames + cp_frames,
            checkpoint: cp_used,
            checkpoint_fallback: cp_fallback,
            replayed_versions: catalog.versions.saturating_sub(versions_at_checkpoint),
        };
        let mut map = map;
        if let Some((offset, reason)) = corrupt {
            if !read_only {
                return Err(Error::Corrupt { offset, reason });
            }
            report.corrupt = Some((offset, reason));
        } else if torn_tail.is_some() && !read_only {
            drop(map);
            data.truncate(head.end).map_err(io)?;
            map = data.map().map_err(io)?;
        }
        // When the checkpoint's own commit is the last one (`last_commit_start` is then
        // `None`: the scan verified no commit after it), it is not written again: the
        // header points at a checkpoint only after that checkpoint's commit returned,
        // that is after its fsync succeeded (`Store::checkpoint`), so it is durable.
        if !read_only && let Some(start_at) = last_commit_start {
            // The last commit may be visible only through the page cache: its fsync may
            // have failed in an earlier process (Linux then drops the dirty state, so the
            // pages never reach the disk). Writing it again and syncing makes everything
            // this handle treats as committed durable before anything is appended after it.
            let end = usize::try_from(head.end).map_err(|_| Error::Integrity { what: "log", offset: head.end })?;
            let from = usize::try_from(start_at).map_err(|_| Error::Integrity { what: "log", offset: start_at })?;
            let last = map.bytes().get(from..end).map(<[u8]>::to_vec).unwrap_or_default();
            data.write_at(start_at, &last).map_err(io)?;
            data.sync().map_err(io)?;
        }
        if damaged_header && !read_only {
            // Heal the damaged copy so the next failure still has a good one.
            let enc = header.encode();
            data.write_at(0, &enc).map_err(io)?;
            data.sync().map_err(io)?;
            data.write_at(HEADER_SIZE as u64, &enc).map_err(io)?;
            data.sync().map_err(io)?;
        }
        if !read_only {
            // Keyring records no committed document uses may have been written by a
            // process that failed before making them durable (a failed write, or a
            // failed fsync whose dirty pages the kernel dropped): make them durable
            // before a commit of this handle relies on one.
            // (From the patient lists: every document is in its patient's list, and
            // a scan of a million documents' entries would cost more than the rest.)
            let first = catalog.max_patient_slot().map_or(0, |s| s.saturating_add(1));
            ring.make_durable_from(first)?;
        }
        let writer = if read_only { None } else { Some(LogWriter::new(data.clone(), head)) };
        Ok(Store {
            path,
            data,
            keys,
            header: Mutex::new(header),
            read_only,
            writer: Mutex::new(writer),
            state: RwLock::new(State { map, head, catalog, keyring: ring, refreshed_seq: 0 }),
            schema,
            report,
            last_write_us: AtomicI64::new(0),
            terms,
            writer_waiters: AtomicUsize::new(0),
        })
    }

    /// Applies verified frames (with their commit numbers) to the catalog in order,
    /// decrypting their records on up to [`REPLAY_THREADS`] threads first; empties
    /// `frames`. The first error in log order is returned.
    fn apply_replayed(
        keys: &KeyHierarchy,
        ring: &Keyring,
        schema: &Schema,
        terms: &TermRegistry,
        cat: &mut Catalog,
        frames: &mut Vec<(ScannedFrame, u64)>,
        hook: &mut FrameHook<'_>,
    ) -> Result<()> {
        let records: Vec<&ScannedFrame> = frames.iter().map(|(f, _)| f).filter(|f| f.ty == FrameType::Record).collect();
        let threads = crate::util::cores().min(REPLAY_THREADS);
        let threads = if records.len() < REPLAY_PARALLEL_MIN { 1 } else { threads };
        let decoded = crate::util::split_map(&records, threads, |part| {
            let mut packer = terms.packer();
            part.iter()
                .map(|f| read::decode_catalog_entry(keys, ring, schema, &mut packer, &f.payload, f.offset))
                .collect()
        });
        // The patients of these records whose checkpoint entries are still sealed are
        // decoded together, on every core, before anything is applied.
        if cat.unloaded_patients() > 0 {
            let slots: Vec<u32> =
                decoded.iter().filter_map(|r| r.as_ref().ok()?.as_ref().map(|v| v.patient_slot)).collect();
            cat.load_patients(&slots, ring)?;
        }
        let mut decoded = decoded.into_iter();
        for (f, commit) in frames.drain(..) {
            let record = match f.ty {
                FrameType::Record => {
                    decoded.next().ok_or(Error::Integrity { what: "record frame", offset: f.offset })??
                }
                _ => None,
            };
            Self::apply_decoded(ring, cat, &f, commit, record)?;
            hook(&f)?;
        }
        Ok(())
    }

    /// Applies one verified frame to the catalog, given its decoded catalog entry if
    /// it is a record (`None` also for a record of an erased patient). The patient's
    /// checkpoint entry is decoded first if it is still sealed.
    fn apply_decoded(
        ring: &Keyring,
        cat: &mut Catalog,
        f: &ScannedFrame,
        commit: u64,
        record: Option<NewVersion>,
    ) -> Result<()> {
        match f.ty {
            FrameType::Record => {
                if let Some(v) = record {
                    cat.load_patient(v.patient_slot, ring)?;
                    cat.apply(v, commit);
                }
            }
            FrameType::AttachmentChunk | FrameType::Commit => {}
            other => cat.note_frame(other, f.offset),
        }
        Ok(())
    }

    /// Applies one verified frame to the catalog.
    fn apply_frame(
        keys: &KeyHierarchy,
        ring: &Keyring,
        schema: &Schema,
        terms: &TermRegistry,
        cat: &mut Catalog,
        f: &ScannedFrame,
        commit: u64,
    ) -> Result<()> {
        let record = match f.ty {
            FrameType::Record => {
                read::decode_catalog_entry(keys, ring, schema, &mut terms.packer(), &f.payload, f.offset)?
            }
            _ => None,
        };
        Self::apply_decoded(ring, cat, f, commit, record)
    }

    /// Re-reads frames committed by another process since this handle last looked
    /// (read-only handles). Returns the number of new commits.
    ///
    /// A refresh that fails part-way (typically on a patient this handle has not
    /// loaded yet: call [`Store::reload_keyring`] and refresh again) keeps what it
    /// applied, and the next refresh applies every frame exactly once.
    pub fn refresh(&self, hook: &mut FrameHook<'_>) -> Result<u64> {
        let map = self.data.map().map_err(|e| Error::io(&self.path, e))?;
        let mut st = self.write_state();
        let start = st.head;
        let out = {
            let State { catalog, keyring, refreshed_seq, .. } = &mut *st;
            let keys = &self.keys;
            let schema = &self.schema;
            let terms = &self.terms;
            let mut apply = |frames: &[ScannedFrame], c: &Commit| -> Result<()> {
                for f in frames {
                    // Scans restart at the last commit head: skip what a failed one applied.
                    if f.seq <= *refreshed_seq {
                        continue;
                    }
                    Self::apply_frame(keys, keyring, schema, terms, catalog, f, c.number)?;
                    *refreshed_seq = f.seq;
                    hook(f)?;
                }
                Ok(())
            };
            scan::scan(map.bytes(), start, &keys.commit_mac, &mut apply)
        };
        // Even after a failure, the catalog may name frames only this map covers.
        st.map = map;
        st.head = out?.head.unwrap_or(start);
        Ok(st.head.commit_number - start.commit_number)
    }

    /// Reloads the keyring (read-only handles, after another process added patients).
    pub fn reload_keyring(&self, keyring: Arc<dyn Storage>) -> Result<()> {
        let ring = Keyring::load(keyring, &self.keys)?;
        self.write_state().keyring = ring;
        Ok(())
    }

    /// Starts a batch of writes; holds the single writer until committed or dropped.
    pub fn batch(&self) -> Result<Batch<'_>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Batch::new(self, self.writer_guard())
    }

    /// Like [`Store::batch`], but returns `None` instead of waiting when the writer is
    /// busy, or when another thread is waiting for it (a thread that only tries must
    /// not win the writer again and again from one that waits: the std mutex is not
    /// fair, and readers committing their audit entries could starve a writer).
    pub fn try_batch(&self) -> Result<Option<Batch<'_>>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.writer_awaited() {
            return Ok(None);
        }
        match self.writer.try_lock() {
            Ok(g) => Batch::new(self, WriterGuard::new(g)).map(Some),
            Err(std::sync::TryLockError::Poisoned(p)) => Batch::new(self, WriterGuard::new(p.into_inner())).map(Some),
            Err(std::sync::TryLockError::WouldBlock) => Ok(None),
        }
    }

    /// What open found.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// (commit number, chain hash) of the last commit; keep it elsewhere to detect a
    /// rolled-back file later.
    pub fn head(&self) -> (u64, [u8; 32]) {
        let h = self.read_state().head;
        (h.commit_number, h.chain)
    }

    /// Read access to the shared state.
    pub fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Store::read_state`] with the whole catalog loaded and the value indexes
    /// current: the patient entries of the checkpoint the vault was opened from that
    /// are still sealed are decoded, and documents committed since the last query are
    /// added to the indexes (see [`Catalog::values`]).
    pub fn read_state_for_query(&self) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.read_loaded()?;
            if !st.catalog.has_pending_values() {
                return Ok(st);
            }
            drop(st);
            self.write_state().catalog.flush_values();
        }
    }

    /// Adds the documents committed since the last query to the value indexes, if some
    /// are waiting and no commit has applied documents for at least `idle`; returns
    /// whether it did. A vault's background thread calls this when writes pause, so
    /// that the first query after a run of writes does not pay for the whole run
    /// (`Catalog::flush_values`); a query still flushes whatever is left.
    pub fn catch_up_indexes(&self, idle: std::time::Duration) -> bool {
        let idle_us = i64::try_from(idle.as_micros()).unwrap_or(i64::MAX);
        let paused = || crate::util::now_micros().saturating_sub(self.last_write_us.load(Ordering::Acquire)) >= idle_us;
        if !paused() || !self.read_state().catalog.has_pending_values() {
            return false;
        }
        let mut st = self.write_state();
        // A commit may have applied documents while this thread waited for the lock.
        if !paused() || !st.catalog.has_pending_values() {
            return false;
        }
        st.catalog.flush_values();
        true
    }

    /// The schema ids the catalog's index terms are packed under.
    pub(crate) fn term_registry(&self) -> &TermRegistry {
        &self.terms
    }

    /// Notes that a commit applied document versions now (see [`Store::catch_up_indexes`]).
    pub(crate) fn note_documents_applied(&self) {
        self.last_write_us.store(crate::util::now_micros(), Ordering::Release);
    }

    /// [`Store::read_state`] with every document in the catalog: the patient entries
    /// of the checkpoint the vault was opened from that are still sealed are decrypted
    /// and decoded first (on every core). Anything that walks the whole catalog reads
    /// it through this.
    pub fn read_loaded(&self) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.read_state();
            if st.catalog.is_loaded() {
                return Ok(st);
            }
            drop(st);
            let mut w = self.write_state();
            let State { catalog, keyring, .. } = &mut *w;
            let r = catalog.load_all(keyring);
            drop(w);
            self.after_checkpoint_load(r)?;
        }
    }

    /// [`Store::read_state`] with the documents of patient `slot` in the catalog
    /// (its checkpoint entry decoded if it was still sealed); other patients' may not
    /// be.
    pub fn read_for_patient(&self, slot: u32) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.read_state();
            if !st.catalog.patient_unloaded(slot) {
                return Ok(st);
            }
            drop(st);
            self.load_patients(&[slot])?;
        }
    }

    /// [`Store::read_state`] with document `id` in the catalog if it exists (its
    /// patient's checkpoint entry decoded if it was still sealed).
    pub fn read_for_doc(&self, id: &crate::model::DocumentId) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.read_state();
            let Some(slot) = st.catalog.unloaded_slot_of(id) else { return Ok(st) };
            drop(st);
            self.load_patients(&[slot])?;
        }
    }

    /// [`Store::read_state`] with every one of `ids` that exists in the catalog (the
    /// checkpoint entries of their patients decoded if they were still sealed): one
    /// acquisition for a run of reads.
    pub fn read_for_docs(&self, ids: &[crate::model::DocumentId]) -> Result<RwLockReadGuard<'_, State>> {
        loop {
            let st = self.read_state();
            if st.catalog.unloaded_patients() == 0 {
                return Ok(st);
            }
            let mut slots: Vec<u32> = ids.iter().filter_map(|id| st.catalog.unloaded_slot_of(id)).collect();
            if slots.is_empty() {
                return Ok(st);
            }
            drop(st);
            slots.sort_unstable();
            slots.dedup();
            self.load_patients(&slots)?;
        }
    }

    /// Decodes the checkpoint entries of the patients `slots` that are still sealed
    /// (on every core).
    pub(crate) fn load_patients(&self, slots: &[u32]) -> Result<()> {
        if self.read_state().catalog.unloaded_patients() == 0 {
            return Ok(());
        }
        let mut w = self.write_state();
        let State { catalog, keyring, .. } = &mut *w;
        let r = catalog.load_patients(slots, keyring);
        drop(w);
        self.after_checkpoint_load(r)
    }

    /// After a sealed checkpoint entry failed to decode: a writable handle points the
    /// header away from the checkpoint, so the next open rebuilds the catalog from the
    /// log (which holds every document) instead of meeting the same entry again.
    /// Skipped when the writer is busy (it may be this thread's own batch); the error
    /// is returned either way.
    fn after_checkpoint_load(&self, r: Result<()>) -> Result<()> {
        if let Err(Error::Integrity { .. }) = &r
            && !self.read_only
            && let Ok(mut w) = self.writer.try_lock()
        {
            let mut h = self.header_guard();
            if h.checkpoint_offset != 0 {
                let mut nh = h.clone();
                nh.checkpoint_offset = 0;
                if self.write_header(&mut w, &mut nh).is_ok() {
                    *h = nh;
                }
            }
        }
        r
    }

    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The key hierarchy.
    pub(crate) fn keys(&self) -> &KeyHierarchy {
        &self.keys
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Whether this handle is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether an I/O failure has latched the writer.
    pub fn is_latched(&self) -> bool {
        self.writer_guard().as_ref().is_some_and(LogWriter::is_latched)
    }

    /// The data file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vault id.
    pub fn vault_id(&self) -> [u8; 16] {
        self.keys.vault_id()
    }

    /// Reads and CRC-checks the frame at `offset`, copying it out of the map first.
    pub fn read_frame(&self, map: &dyn Region, offset: u64, expect: FrameType) -> Result<Vec<u8>> {
        read::copy_frame(map, offset, expect)
    }

    /// Adds a key slot; O(1): only the header is rewritten.
    pub fn add_slot(&self, secret: &Unlock<'_>, kdf: KdfParams) -> Result<usize> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut w = self.writer_guard();
        let mut h = lock(&self.header);
        let free = h
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| Error::KeySlot(format!("all {MAX_SLOTS} key slots are in use; remove one first")))?;
        let mut nh = h.clone();
        nh.slots[free] = Some(KeySlot::wrap(self.keys.root(), &nh.vault_id, secret, kdf)?);
        self.write_header(&mut w, &mut nh)?;
        *h = nh;
        Ok(free)
    }

    /// Removes key slot `index`; the last remaining slot cannot be removed.
    pub fn remove_slot(&self, index: usize) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut w = self.writer_guard();
        let mut h = lock(&self.header);
        if index >= MAX_SLOTS || h.slots[index].is_none() {
            return Err(Error::KeySlot(format!("key slot {index} is empty")));
        }
        if h.slots.iter().filter(|s| s.is_some()).count() == 1 {
            return Err(Error::KeySlot("cannot remove the last key slot: the vault would become unreadable".into()));
        }
        let mut nh = h.clone();
        nh.slots[index] = None;
        self.write_header(&mut w, &mut nh)?;
        *h = nh;
        Ok(())
    }

    /// The slots in use: (index, "passphrase" | "raw-key").
    pub fn slots(&self) -> Vec<(usize, &'static str)> {
        lock(&self.header)
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|s| {
                    (
                        i,
                        match s.kind {
                            crate::format::header::SlotKind::Passphrase(_) => "passphrase",
                            crate::format::header::SlotKind::RawKey => "raw-key",
                        },
                    )
                })
            })
            .collect()
    }

    /// Which slot index a secret unlocks.
    pub fn slot_of(&self, secret: &Unlock<'_>) -> Result<usize> {
        Ok(lock(&self.header).unlock(secret)?.0)
    }

    /// Whether a thread is waiting for the writer: its commit will carry every
    /// pending audit entry, so the audit flusher leaves them to it.
    pub(crate) fn writer_awaited(&self) -> bool {
        self.writer_waiters.load(Ordering::Acquire) > 0
    }

    /// The writer, waiting for it if it is busy (counted in `writer_waiters` while
    /// waiting, see [`Store::try_batch`]).
    pub(crate) fn writer_guard(&self) -> WriterGuard<'_> {
        // Not ahead of threads already waiting.
        if !self.writer_awaited() {
            match self.writer.try_lock() {
                Ok(g) => return WriterGuard::new(g),
                Err(std::sync::TryLockError::Poisoned(p)) => return WriterGuard::new(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.writer_waiters.fetch_add(1, Ordering::AcqRel);
        let g = lock(&self.writer);
        self.writer_waiters.fetch_sub(1, Ordering::AcqRel);
        WriterGuard::new(g)
    }

    /// Whether this thread holds the writer (a batch of its own is open).
    pub(crate) fn writer_held_here() -> bool {
        WRITER_HELD.with(|n| n.get() > 0)
    }

    pub(crate) fn header_guard(&self) -> MutexGuard<'_, Header> {
        lock(&self.header)
    }

    /// Rewrites both header copies, with the writer (`w`, its guard held by the caller)
    /// locked. Like every write, refused once an I/O failure has latched the writer,
    /// and latches it when it fails itself.
    fn write_header(&self, w: &mut Option<LogWriter>, h: &mut Header) -> Result<()> {
        if w.as_ref().is_some_and(LogWriter::is_latched) {
            return Err(Error::WritesLatched);
        }
        h.generation += 1;
        let enc = h.encode();
        let io = |e| Error::io(&self.path, e);
        // Copy A, fsync, then copy B, fsync: a crash leaves at least one valid copy.
        let r = self
            .data
            .write_at(0, &enc)
            .and_then(|()| self.data.sync())
            .and_then(|()| self.data.write_at(HEADER_SIZE as u64, &enc))
            .and_then(|()| self.data.sync());
        if r.is_err()
            && let Some(w) = w.as_mut()
        {
            w.latch();
        }
        r.map_err(io)
    }

    /// Labels and kinds of a catalog entry, for policy checks without decryption.
    pub fn entry_meta(&self, id: &crate::model::DocumentId) -> Result<Option<(u32, Kind, LabelSet)>> {
        let st = self.read_for_doc(id)?;
        Ok(st.catalog.docs.get(id).map(|e| (e.patient_slot, e.kind.clone(), (*e.labels).clone())))
    }
}

/// Opens and decodes the envelope of a record (helper shared with verify), in a wiped
/// copy of its sealed bytes.
pub(crate) fn open_envelope(keys: &KeyHierarchy, rec: &record::SealedRecord<'_>, offset: u64) -> Result<Envelope> {
    let mut buf = zeroize::Zeroizing::new(rec.envelope.to_vec());
    open_envelope_in_place(keys, (&rec.id, rec.version, &rec.nonce), &mut buf, offset).map(|v| v.to_envelope())
}

/// Opens the sealed envelope `sealed` of document version `(id, version)` with record
/// nonce `nonce` in place, and decodes it; the result borrows from `sealed`.
pub(crate) fn open_envelope_in_place<'b>(
    keys: &KeyHierarchy,
    (id, version, nonce): (&crate::model::DocumentId, u32, &[u8; crate::crypto::aead::NONCE_LEN]),
    sealed: &'b mut [u8],
    offset: u64,
) -> Result<envelope::EnvelopeView<'b>> {
    let aad = record::envelope_aad(&keys.vault_id(), id, version);
    let pt = crate::crypto::aead::open_detached_nonce(&keys.meta, &record::part_nonce(nonce, 0), &aad, sealed)
        .map_err(|_| Error::Integrity { what: "document envelope", offset })?;
    envelope::decode_view(pt, offset)
}

fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// fsyncs the directory holding `path`, so a newly created file's entry is durable.
pub(crate) fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
