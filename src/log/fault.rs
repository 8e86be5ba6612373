//! A fault-injecting, in-memory [`Storage`] for crash, fault and fuzz tests.
//!
//! A [`FaultStorage`] models one file as the operating system and the disk see it:
//!
//! - the **volatile image**: what a reader of the file sees (written, maybe not synced;
//!   the page cache);
//! - the **durable image**: what survives a power cut (everything a successful
//!   [`Storage::sync`] covered);
//! - the **unsynced writes**: the writes made since the last sync, in order. A crash
//!   keeps the durable image plus any prefix of this stream, chosen by the test
//!   ([`FaultStorage::crash`]), which models a torn write at every byte boundary.
//!
//! Every operation is counted by a [`FaultController`], which may be shared by several
//! storages (a vault's data file and keyring), so that "the N-th write" means the N-th
//! write the process made to any of them. The controller can fail the N-th write, the
//! N-th sync or the N-th file growth with:
//!
//! - [`Fault::Eio`]: nothing happens, the call fails with `EIO`;
//! - [`Fault::NoSpace`]: nothing happens, the call fails with `ENOSPC`
//!   ([`std::io::ErrorKind::StorageFull`]);
//! - [`Fault::ShortWrite`]: a prefix of the buffer reaches the file, then `ENOSPC`
//!   (a disk that fills up in the middle of a write);
//! - [`Fault::PowerCut`]: the buffer reaches the volatile image, the call fails and
//!   so does every later write, sync and truncate (the machine is gone); the test
//!   then calls [`FaultStorage::crash`] to get what the disk holds after reboot.
//!
//! A failed sync follows Linux semantics ("fsyncgate"): the writes it should have
//! made durable are dropped from the unsynced stream (the kernel marked the dirty
//! pages clean), so they stay visible to reads but a *later successful* sync does not
//! make them durable. An engine that retries a failed fsync and carries on therefore
//! loses data in this model, as it would on a real system.
//!
//! [`Storage::map`] returns a copy of the volatile image (a `Vec<u8>` is a
//! [`Region`]), so a map taken before a write never changes.
//!
//! ```
//! use std::sync::Arc;
//! use chartvault::log::fault::{Fault, FaultController, FaultStorage, Trigger};
//! use chartvault::log::Storage;
//!
//! let ctl = FaultController::new();
//! let f = FaultStorage::with_controller("data", ctl.clone());
//! f.write_at(0, b"hello").unwrap();
//! f.sync().unwrap();
//! f.write_at(5, b" world").unwrap();
//! ctl.fail_at(Trigger::Write(3), Fault::PowerCut);
//! assert!(f.write_at(11, b"!").is_err());
//! assert_eq!(f.unsynced_writes(), vec![(5, 6), (11, 1)]);
//! // After the power cut, the disk holds the synced bytes and maybe part of the rest.
//! assert_eq!(f.crash(0).volatile_image(), b"hello");
//! assert_eq!(f.crash(3).volatile_image(), b"hello wo");
//! assert_eq!(f.crash(usize::MAX).volatile_image(), b"hello world!");
//! ```

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Region, Storage};

/// `EIO` on the platforms chartvault runs on.
const EIO: i32 = 5;
/// `ENOSPC` on Linux, macOS and the BSDs.
const ENOSPC: i32 = 28;

/// An `EIO` error, as a failing disk reports it.
pub fn eio() -> io::Error {
    if cfg!(unix) { io::Error::from_raw_os_error(EIO) } else { io::Error::other("injected I/O error (EIO)") }
}

/// An `ENOSPC` error (kind [`io::ErrorKind::StorageFull`]).
pub fn enospc() -> io::Error {
    if cfg!(unix) {
        io::Error::from_raw_os_error(ENOSPC)
    } else {
        io::Error::new(io::ErrorKind::StorageFull, "injected out-of-space error (ENOSPC)")
    }
}

/// Which operation a planned fault hits. Ordinals count from 1 and cover every storage
/// sharing the [`FaultController`] (see [`OpCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The n-th call of [`Storage::write_at`].
    Write(u64),
    /// The n-th call of [`Storage::sync`].
    Sync(u64),
    /// The n-th write that extends a file past its current (volatile) length.
    Growth(u64),
}

/// What a planned fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The operation has no effect and fails with `EIO`.
    Eio,
    /// The operation has no effect and fails with `ENOSPC`.
    NoSpace,
    /// A write stores its first `n` bytes (at most the whole buffer), then fails with
    /// `ENOSPC`. On a sync this behaves like [`Fault::Eio`].
    ShortWrite(usize),
    /// The power goes: a write's bytes reach the volatile image (how many of them the
    /// disk kept is chosen at [`FaultStorage::crash`]), a sync makes nothing durable,
    /// and this and every later write, sync and truncate fail with `EIO`. Reads still
    /// succeed, so the dying process can be dropped cleanly.
    PowerCut,
}

/// A fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// The trigger that matched.
    pub trigger: Trigger,
    /// What was done.
    pub fault: Fault,
    /// The storage it hit.
    pub path: PathBuf,
    /// File offset of the write (0 for a sync).
    pub offset: u64,
    /// Length of the write buffer (0 for a sync).
    pub len: usize,
}

/// Operations counted by a [`FaultController`], over every storage sharing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Calls of [`Storage::write_at`] (including failed ones).
    pub writes: u64,
    /// Calls of [`Storage::sync`] (including failed ones).
    pub syncs: u64,
    /// Writes that extended a file (including failed ones).
    pub growths: u64,
    /// Calls of [`Storage::truncate`].
    pub truncates: u64,
    /// Calls of [`Storage::read_at`].
    pub reads: u64,
    /// Calls of [`Storage::map`].
    pub maps: u64,
    /// Bytes that reached a volatile image through `write_at`.
    pub bytes_written: u64,
}

#[derive(Debug, Default)]
struct CtlState {
    counts: OpCounts,
    plan: Vec<(Trigger, Fault)>,
    fired: Vec<FaultEvent>,
    halted: bool,
}

/// Counts operations and fires planned faults for one or more [`FaultStorage`]s.
#[derive(Debug, Default)]
pub struct FaultController {
    state: Mutex<CtlState>,
}

impl FaultController {
    /// A controller with nothing planned.
    pub fn new() -> Arc<Self> {
        Arc::new(FaultController::default())
    }

    fn lock(&self) -> MutexGuard<'_, CtlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans `fault` for the operation `trigger` names. Each planned fault fires once.
    pub fn fail_at(&self, trigger: Trigger, fault: Fault) {
        self.lock().plan.push((trigger, fault));
    }

    /// Plans `fault` for the next write (counted from now).
    pub fn fail_next_write(&self, fault: Fault) {
        let mut s = self.lock();
        let n = s.counts.writes + 1;
        s.plan.push((Trigger::Write(n), fault));
    }

    /// Plans `fault` for the next sync (counted from now).
    pub fn fail_next_sync(&self, fault: Fault) {
        let mut s = self.lock();
        let n = s.counts.syncs + 1;
        s.plan.push((Trigger::Sync(n), fault));
    }

    /// Plans `fault` for the next write that grows a file (counted from now).
    pub fn fail_next_growth(&self, fault: Fault) {
        let mut s = self.lock();
        let n = s.counts.growths + 1;
        s.plan.push((Trigger::Growth(n), fault));
    }

    /// Drops every planned fault that has not fired.
    pub fn clear_plan(&self) {
        self.lock().plan.clear();
    }

    /// The operations counted so far.
    pub fn counts(&self) -> OpCounts {
        self.lock().counts
    }

    /// The faults that fired, oldest first.
    pub fn fired(&self) -> Vec<FaultEvent> {
        self.lock().fired.clone()
    }

    /// Whether a [`Fault::PowerCut`] has fired.
    pub fn is_halted(&self) -> bool {
        self.lock().halted
    }

    /// Takes the planned fault matching the operation just counted, if any.
    fn take(s: &mut CtlState, matches: impl Fn(Trigger) -> bool) -> Option<(Trigger, Fault)> {
        let i = s.plan.iter().position(|(t, _)| matches(*t))?;
        Some(s.plan.remove(i))
    }
}

/// One file's images.
#[derive(Debug, Default, Clone)]
struct Images {
    /// What reads see.
    volatile: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
}

fn apply(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let at = usize::try_from(offset).expect("offset fits in memory");
    let end = at + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[at..end].copy_from_slice(bytes);
}

/// An in-memory file with separate durable and volatile images and injectable faults.
/// See the [module documentation](self).
#[derive(Debug)]
pub struct FaultStorage {
    path: PathBuf,
    ctl: Arc<FaultController>,
    images: Mutex<Images>,
}

impl FaultStorage {
    /// An empty file with its own controller.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_controller(path, FaultController::new())
    }

    /// An empty file counted by (and failing through) `ctl`.
    pub fn with_controller(path: impl Into<PathBuf>, ctl: Arc<FaultController>) -> Self {
        FaultStorage { path: path.into(), ctl, images: Mutex::new(Images::default()) }
    }

    /// A file whose durable and volatile images are `bytes` (a file found on disk).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>, ctl: Arc<FaultController>) -> Self {
        let images = Images { volatile: bytes.clone(), durable: bytes, unsynced: Vec::new() };
        FaultStorage { path: path.into(), ctl, images: Mutex::new(images) }
    }

    fn images(&self) -> MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The controller counting this storage's operations.
    pub fn controller(&self) -> &Arc<FaultController> {
        &self.ctl
    }

    /// What a reader of the file sees now.
    pub fn volatile_image(&self) -> Vec<u8> {
        self.images().volatile.clone()
    }

    /// What would survive a power cut now if no unsynced byte reached the disk.
    pub fn durable_image(&self) -> Vec<u8> {
        self.images().durable.clone()
    }

    /// The writes since the last sync, in order: (offset, length).
    pub fn unsynced_writes(&self) -> Vec<(u64, usize)> {
        self.images().unsynced.iter().map(|(o, b)| (*o, b.len())).collect()
    }

    /// Total bytes of the writes since the last sync.
    pub fn unsynced_len(&self) -> usize {
        self.images().unsynced.iter().map(|(_, b)| b.len()).sum()
    }

    /// The file after a power cut: the durable image plus the first `keep` bytes of the
    /// unsynced write stream (in write order; the write that straddles `keep` is torn
    /// there). `0` keeps only durable bytes, `usize::MAX` keeps everything written.
    /// The new storage has a fresh controller; this one is unchanged, so a test can
    /// take several crash images of the same moment.
    pub fn crash(&self, keep: usize) -> FaultStorage {
        self.crash_with(keep, FaultController::new())
    }

    /// Like [`FaultStorage::crash`], counted by (and failing through) `ctl`.
    pub fn crash_with(&self, keep: usize, ctl: Arc<FaultController>) -> FaultStorage {
        self.crash_losing_with(keep, 0..0, ctl)
    }

    /// The file after a power cut in which the disk kept the first `keep` bytes of the
    /// unsynced write stream *except* those at stream positions `lost` (a page the
    /// disk never wrote although it wrote later ones): lost bytes keep their durable
    /// content, or read as zeros past the durable end (the file length was kept).
    pub fn crash_losing(&self, keep: usize, lost: Range<usize>) -> FaultStorage {
        self.crash_losing_with(keep, lost, FaultController::new())
    }

    /// Like [`FaultStorage::crash_losing`], counted by (and failing through) `ctl`.
    pub fn crash_losing_with(&self, keep: usize, lost: Range<usize>, ctl: Arc<FaultController>) -> FaultStorage {
        let im = self.images();
        let mut disk = im.durable.clone();
        let mut pos = 0usize;
        for (off, bytes) in &im.unsynced {
            if pos >= keep {
                break;
            }
            let n = bytes.len().min(keep - pos);
            let at = usize::try_from(*off).expect("offset fits in memory");
            if disk.len() < at + n {
                disk.resize(at + n, 0);
            }
            // Local ranges of this write before and after the lost stretch.
            let lost_from = lost.start.saturating_sub(pos).min(n);
            let lost_to = lost.end.saturating_sub(pos).min(n).max(lost_from);
            apply(&mut disk, *off, &bytes[..lost_from]);
            apply(&mut disk, *off + lost_to as u64, &bytes[lost_to..n]);
            pos += bytes.len();
        }
        drop(im);
        FaultStorage::from_bytes(self.path.clone(), disk, ctl)
    }

    /// Counts a write and returns the fault to apply, if one fires.
    fn plan_write(&self, offset: u64, len: usize, grows: bool) -> Result<Option<Fault>, io::Error> {
        let mut s = self.ctl.lock();
        s.counts.writes += 1;
        if grows {
            s.counts.growths += 1;
        }
        if s.halted {
            return Err(eio());
        }
        let (w, g) = (s.counts.writes, s.counts.growths);
        let hit = FaultController::take(&mut s, |t| t == Trigger::Write(w) || (grows && t == Trigger::Growth(g)));
        Ok(hit.map(|(trigger, fault)| {
            if fault == Fault::PowerCut {
                s.halted = true;
            }
            s.fired.push(FaultEvent { trigger, fault, path: self.path.clone(), offset, len });
            fault
        }))
    }
}

impl Storage for FaultStorage {
    fn len(&self) -> io::Result<u64> {
        Ok(self.images().volatile.len() as u64)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        // The file's lock, then the controller's: the only place the two nest.
        let mut im = self.images();
        let grows = offset.saturating_add(buf.len() as u64) > im.volatile.len() as u64;
        let fault = self.plan_write(offset, buf.len(), grows);
        let (stored, result) = match fault? {
            None => (buf.len(), Ok(())),
            Some(Fault::Eio) => (0, Err(eio())),
            Some(Fault::NoSpace) => (0, Err(enospc())),
            Some(Fault::ShortWrite(n)) => (n.min(buf.len()), Err(enospc())),
            Some(Fault::PowerCut) => (buf.len(), Err(eio())),
        };
        if stored > 0 {
            apply(&mut im.volatile, offset, &buf[..stored]);
            im.unsynced.push((offset, buf[..stored].to_vec()));
            self.ctl.lock().counts.bytes_written += stored as u64;
        }
        result
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.ctl.lock().counts.reads += 1;
        let im = self.images();
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| im.volatile.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let fault = {
            let mut s = self.ctl.lock();
            s.counts.syncs += 1;
            if s.halted {
                return Err(eio());
            }
            let n = s.counts.syncs;
            let hit = FaultController::take(&mut s, |t| t == Trigger::Sync(n));
            hit.map(|(trigger, fault)| {
                if fault == Fault::PowerCut {
                    s.halted = true;
                }
                s.fired.push(FaultEvent { trigger, fault, path: self.path.clone(), offset: 0, len: 0 });
                fault
            })
        };
        let mut im = self.images();
        match fault {
            None => {
                let Images { durable, unsynced, .. } = &mut *im;
                for (off, bytes) in unsynced.drain(..) {
                    apply(durable, off, &bytes);
                }
                Ok(())
            }
            // The power went during the sync: nothing more is known to be durable; the
            // crash image decides how much of the unsynced stream the disk kept.
            Some(Fault::PowerCut) => Err(eio()),
            // fsyncgate: the kernel dropped the dirty pages' error state, so these
            // writes never become durable, though reads still return them.
            Some(Fault::Eio | Fault::ShortWrite(_)) => {
                im.unsynced.clear();
                Err(eio())
            }
            Some(Fault::NoSpace) => {
                im.unsynced.clear();
                Err(enospc())
            }
        }
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        {
            let mut s = self.ctl.lock();
            s.counts.truncates += 1;
            if s.halted {
                return Err(eio());
            }
        }
        // Like `FileStorage::truncate`: set_len, then sync_all (everything durable).
        let mut im = self.images();
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let Images { volatile, durable, unsynced } = &mut *im;
        volatile.resize(len, 0);
        unsynced.clear();
        *durable = volatile.clone();
        Ok(())
    }

    fn map(&self) -> io::Result<Arc<dyn Region>> {
        self.ctl.lock().counts.maps += 1;
        Ok(Arc::new(self.images().volatile.clone()))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_volatile_and_torn_crash_images() {
        let ctl = FaultController::new();
        let f = FaultStorage::with_controller("f", ctl.clone());
        f.write_at(0, b"abcd").unwrap();
        f.sync().unwrap();
        f.write_at(4, b"efgh").unwrap();
        f.write_at(0, b"AB").unwrap();
        assert_eq!(f.volatile_image(), b"ABcdefgh");
        assert_eq!(f.durable_image(), b"abcd");
        assert_eq!(f.unsynced_writes(), vec![(4, 4), (0, 2)]);
        assert_eq!(f.crash(0).volatile_image(), b"abcd");
        assert_eq!(f.crash(2).volatile_image(), b"abcdef");
        assert_eq!(f.crash(5).volatile_image(), b"Abcdefgh");
        assert_eq!(f.crash(usize::MAX).volatile_image(), b"ABcdefgh");
        assert_eq!(f.crash_losing(usize::MAX, 1..3).volatile_image(), b"ABcde\0\0h");
        assert_eq!(f.crash_losing(5, 0..2).volatile_image(), b"Abcd\0\0gh");
        let c = ctl.counts();
        assert_eq!((c.writes, c.syncs, c.growths, c.bytes_written), (3, 1, 2, 10));
    }

    #[test]
    fn planned_faults_fire_once_on_the_named_operation() {
        let ctl = FaultController::new();
        let a = FaultStorage::with_controller("a", ctl.clone());
        let b = FaultStorage::with_controller("b", ctl.clone());
        ctl.fail_at(Trigger::Write(2), Fault::NoSpace);
        ctl.fail_at(Trigger::Growth(4), Fault::ShortWrite(2));
        a.write_at(0, b"1234").unwrap();
        let e = b.write_at(0, b"xy").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(b.len().unwrap(), 0);
        b.write_at(0, b"xy").unwrap();
        assert!(a.write_at(4, b"5678").is_err());
        assert_eq!(a.volatile_image(), b"123456");
        a.write_at(0, b"ab").unwrap();
        let fired = ctl.fired();
        assert_eq!(fired.len(), 2);
        assert_eq!((fired[0].path.as_path(), fired[0].trigger), (Path::new("b"), Trigger::Write(2)));
        assert_eq!((fired[1].path.as_path(), fired[1].trigger), (Path::new("a"), Trigger::Growth(4)));
    }

    #[test]
    fn failed_sync_drops_the_dirty_writes_and_power_cut_halts() {
        let f = FaultStorage::new("f");
        f.write_at(0, b"aa").unwrap();
        f.controller().fail_next_sync(Fault::Eio);
        assert!(f.sync().is_err());
        f.write_at(2, b"bb").unwrap();
        f.sync().unwrap();
        // The first write is still readable but was never made durable.
        assert_eq!(f.volatile_image(), b"aabb");
        assert_eq!(f.durable_image(), b"\0\0bb");
        f.controller().fail_next_write(Fault::PowerCut);
        assert!(f.write_at(4, b"cc").is_err());
        assert!(f.write_at(6, b"dd").is_err());
        assert!(f.sync().is_err());
        assert!(f.truncate(0).is_err());
        assert!(f.controller().is_halted());
        assert_eq!(f.crash(1).volatile_image(), b"\0\0bbc");
        let mut buf = [0u8; 2];
        f.read_at(2, &mut buf).unwrap();
        assert_eq!(&buf, b"bb");
        assert!(f.read_at(5, &mut buf).is_err());
    }
}
