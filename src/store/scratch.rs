//! A per-thread scratch buffer for the copy of a frame that a read decrypts in place.
//!
//! Every read copies its record frame out of the map and opens the sealed parts in
//! that copy. A fresh heap buffer per read is a "large" allocation for glibc's malloc
//! (over 1 KiB), and each one makes malloc consolidate the small chunks the previous
//! read freed: in a process that has just written a large vault, that alone made
//! reads ~25% slower (`bench/RESULTS.md`, session 6). Reads reuse one buffer per
//! thread instead.
//!
//! The buffer holds plaintext while in use, so it is wiped on every way out of
//! [`with_frame_buffer`] (return, error or panic): the bytes used are zeroed and the
//! length set to 0. Bytes past the length are always zero (or were never written).
//! A buffer that grew past [`KEEP_BYTES`] is freed after use (wiped first), so a
//! thread does not keep a large allocation after reading one large document.

use std::cell::RefCell;

use zeroize::{Zeroize, Zeroizing};

/// Largest buffer kept between reads (larger ones are wiped and freed after use).
pub const KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    static FRAME_BUFFER: RefCell<Zeroizing<Vec<u8>>> = RefCell::new(Zeroizing::new(Vec::new()));
}

/// Wipes the used part of the buffer when dropped (also during unwinding).
struct Wipe<'b>(&'b mut Vec<u8>);

impl Drop for Wipe<'_> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.clear();
        if self.0.capacity() > KEEP_BYTES {
            // Freed here; every byte it held was zeroed above.
            *self.0 = Vec::new();
        }
    }
}

/// Runs `f` with this thread's empty scratch buffer, and wipes it afterwards. If the
/// buffer is already in use on this thread (a nested read), or the thread is being torn
/// down (a read from a thread-local destructor), `f` gets a fresh zeroizing buffer.
///
/// ```
/// use chartvault::store::scratch::with_frame_buffer;
/// let n = with_frame_buffer(|b| {
///     b.extend_from_slice(b"plaintext");
///     b.len()
/// });
/// assert_eq!(n, 9);
/// with_frame_buffer(|b| assert!(b.is_empty()));
/// ```
pub fn with_frame_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut pending = Some(f);
    let shared = FRAME_BUFFER.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        let f = pending.take()?;
        let wipe = Wipe(&mut buf);
        Some(f(wipe.0))
    });
    if let Ok(Some(r)) = shared {
        return r;
    }
    let mut own = Zeroizing::new(Vec::new());
    let wipe = Wipe(&mut own);
    match pending.take() {
        Some(f) => f(wipe.0),
        // `pending` is taken only right before `f` runs on the shared buffer, and
        // then `shared` holds its result.
        None => unreachable!("the scratch closure ran but its result was lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_wiped_and_emptied_after_use_even_on_error_or_panic() {
        let r: Result<(), ()> = with_frame_buffer(|b| {
            b.extend_from_slice(&[7u8; 100]);
            Err(())
        });
        assert!(r.is_err());
        FRAME_BUFFER.with(|c| assert!(c.borrow().is_empty()));
        with_frame_buffer(|b| {
            assert!(b.is_empty());
            // The bytes the previous use wrote are zero now.
            b.resize(100, 0);
            assert!(b.iter().all(|&x| x == 0));
        });
        let caught = std::panic::catch_unwind(|| {
            with_frame_buffer(|b| {
                b.extend_from_slice(&[9u8; 50]);
                panic!("reader failed");
            })
        });
        assert!(caught.is_err());
        with_frame_buffer(|b| {
            assert!(b.is_empty());
            b.resize(50, 0);
            assert!(b.iter().all(|&x| x == 0));
        });
    }

    /// A read from a thread-local destructor (when this buffer may be gone already)
    /// still gets a buffer instead of a panic.
    #[test]
    fn a_use_while_the_thread_is_torn_down_works() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        struct ReadsOnDrop(Arc<AtomicBool>);
        impl Drop for ReadsOnDrop {
            fn drop(&mut self) {
                let n = with_frame_buffer(|b| {
                    b.extend_from_slice(b"late");
                    b.len()
                });
                self.0.store(n == 4, Ordering::SeqCst);
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<ReadsOnDrop>> = const { std::cell::RefCell::new(None) };
        }
        let ok = Arc::new(AtomicBool::new(false));
        let flag = ok.clone();
        std::thread::spawn(move || {
            // Use the buffer first, so it is initialised (and may be destroyed first).
            with_frame_buffer(|b| b.push(1));
            LATE.with(|l| *l.borrow_mut() = Some(ReadsOnDrop(flag)));
        })
        .join()
        .unwrap();
        assert!(ok.load(Ordering::SeqCst));
    }

    #[test]
    fn a_nested_use_gets_its_own_buffer_and_large_buffers_are_not_kept() {
        with_frame_buffer(|outer| {
            outer.extend_from_slice(b"outer");
            with_frame_buffer(|inner| {
                assert!(inner.is_empty());
                inner.extend_from_slice(b"inner");
            });
            assert_eq!(&outer[..], b"outer");
        });
        with_frame_buffer(|b| b.resize(KEEP_BYTES + 1, 1));
        FRAME_BUFFER.with(|c| assert_eq!(c.borrow().capacity(), 0));
        with_frame_buffer(|b| b.resize(1000, 1));
        FRAME_BUFFER.with(|c| assert!(c.borrow().capacity() >= 1000));
    }
}
