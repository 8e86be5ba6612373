//! The storage trait: every write, fsync, growth and read of a vault file goes
//! through it, so tests can inject faults (EIO, ENOSPC, short writes, crashes).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read-only view of a file's bytes (a memory map, or a copy in tests).
pub trait Region: Send + Sync {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

impl Region for memmap2::Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Region for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Where a vault file's bytes live.
pub trait Storage: Send + Sync {
    /// Current length of the file (a handle that writes may answer from its own
    /// bookkeeping rather than ask the kernel).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Writes all of `buf` at `offset` (growing the file if needed).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Truncates the file to `len` (only used before anything is mapped, at recovery).
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// A read-only view of the whole file as it is now.
    fn map(&self) -> io::Result<Arc<dyn Region>>;
    /// A human-readable name for errors.
    fn path(&self) -> &Path;
}

/// A real file: writes with `pwrite`, `fdatasync`, reads through `memmap2`.
///
/// On Unix the file is mapped with headroom past its end, so the map is replaced only
/// when the file outgrows it (not after every commit); each [`Region`] handed out covers
/// exactly the bytes the file had when it was taken, so nothing past the end of the
/// file is ever touched.
///
/// Once a handle has written to the file it keeps the file length itself instead of
/// asking the kernel: only the holder of the writer's exclusive lock writes, and on
/// Linux 6.13+ a `stat` between two writes makes the next write update the file's
/// timestamps with fine-grained values, which then costs the next `fdatasync` a
/// journal commit even when the write overwrote the zero reserve in place (measured:
/// 3 block-device writes per commit instead of 2).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    mapping: std::sync::Mutex<Option<Arc<memmap2::Mmap>>>,
    /// The file length as this handle's own writes left it, or [`UNKNOWN_LEN`] until
    /// it has written (and after a failed write or truncate).
    known_len: std::sync::atomic::AtomicU64,
}

/// [`FileStorage::known_len`] when the length must be asked from the kernel.
const UNKNOWN_LEN: u64 = u64::MAX;

/// A view of the first `len` bytes of a (possibly larger) shared mapping.
struct MapView {
    map: Arc<memmap2::Mmap>,
    len: usize,
}

impl Region for MapView {
    fn bytes(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl FileStorage {
    /// Wraps an open file.
    pub fn new(file: File, path: PathBuf) -> Self {
        FileStorage {
            file,
            path,
            mapping: std::sync::Mutex::new(None),
            known_len: std::sync::atomic::AtomicU64::new(UNKNOWN_LEN),
        }
    }

    fn headroom(len: usize) -> usize {
        if cfg!(unix) { len.saturating_add((len / 2).max(64 << 20)) } else { len }
    }

    /// The underlying file (for locking).
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(unix)]
fn pwrite_all(f: &File, off: u64, buf: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}
#[cfg(unix)]
fn pread_exact(f: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}
#[cfg(windows)]
fn pwrite_all(f: &File, mut off: u64, mut buf: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}
#[cfg(windows)]
fn pread_exact(f: &File, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_read(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        off += n as u64;
    }
    Ok(())
}

impl Storage for FileStorage {
    fn len(&self) -> io::Result<u64> {
        use std::sync::atomic::Ordering;
        match self.known_len.load(Ordering::Acquire) {
            UNKNOWN_LEN => Ok(self.file.metadata()?.len()),
            n => Ok(n),
        }
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        // Learn the length once, before the first write (the stat is then not
        // between two writes of commits).
        if self.known_len.load(Ordering::Acquire) == UNKNOWN_LEN {
            let n = self.file.metadata()?.len();
            let _ = self.known_len.compare_exchange(UNKNOWN_LEN, n, Ordering::AcqRel, Ordering::Acquire);
        }
        let r = pwrite_all(&self.file, offset, buf);
        match &r {
            Ok(()) => {
                self.known_len.fetch_max(offset.saturating_add(buf.len() as u64), Ordering::AcqRel);
            }
            // A failed write may have changed the length by any amount: ask again.
            Err(_) => self.known_len.store(UNKNOWN_LEN, Ordering::Release),
        }
        r
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.file, offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        // Forget the mapping first: no view may outlive the bytes it covers.
        *self.mapping.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.known_len.store(UNKNOWN_LEN, std::sync::atomic::Ordering::Release);
        self.file.set_len(len)?;
        self.file.sync_all()
    }
    fn map(&self) -> io::Result<Arc<dyn Region>> {
        let len = usize::try_from(self.len()?).map_err(|_| io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(Arc::new(Vec::new()));
        }
        let mut cached = self.mapping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cached.as_ref().filter(|m| m.len() >= len) {
            return Ok(Arc::new(MapView { map: m.clone(), len }));
        }
        // SAFETY: the map is read-only and chartvault never writes through it. The
        // writer only writes past the committed log end (appending, or overwriting
        // the zero reserve that follows the log end in place) and never shrinks a
        // mapped file (truncation happens at open, before any view is used, and drops
        // the cached mapping). Bytes past the log end may therefore change under a
        // view; readers copy bytes out of the map before verifying them and use
        // nothing past the log end they verified.
        // The mapping may extend past the end of the file (headroom for appends), but
        // every view covers only bytes the file had when the view was taken, so no
        // page past the end of the file is ever accessed. Another process truncating
        // the file could still raise SIGBUS: SECURITY.md documents this, and the
        // writer's exclusive lock keeps other chartvault writers out.
        let m = unsafe { memmap2::MmapOptions::new().len(Self::headroom(len)).map(&self.file)? };
        let m = Arc::new(m);
        *cached = Some(m.clone());
        Ok(Arc::new(MapView { map: m, len }))
    }
    fn path(&self) -> &Path {
        &self.path
    }
}
