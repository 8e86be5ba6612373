//! Small helpers shared across layers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current Unix time in microseconds.
pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

/// Parses lowercase or uppercase hex into exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        *o = d(b[2 * i])? << 4 | d(b[2 * i + 1])?;
    }
    Some(out)
}

/// Chunks per thread [`split_map`] cuts its items into.
const CHUNKS_PER_THREAD: usize = 8;

/// The number of cores this process may use, asked of the OS once.
///
/// `std::thread::available_parallelism` reads the cgroup files on every call (a dozen
/// system calls, about as long as decrypting a document on a small VM), so the read
/// paths that decide how many threads to use ask this instead.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Applies `f` to contiguous chunks of `items` on up to `threads` threads (this one and
/// `threads - 1` tasks on rayon's global pool, all finished before returning) and
/// concatenates the results in order.
///
/// The pool's threads persist, so a call costs a wake-up rather than a thread spawn
/// (a chart of 20 documents spent a fifth of its time creating threads). The chunks are
/// small and claimed one at a time, so a thread that gets no CPU for a while (a busy
/// machine) leaves its share to the others instead of making this thread wait for it:
/// this thread waits at most for the chunks already in progress. A chunk whose helper
/// panicked is redone on this thread, so the result is always complete.
pub(crate) fn split_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    if threads < 2 || items.len() < 2 {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads * CHUNKS_PER_THREAD).max(1);
    let parts: Vec<&[T]> = items.chunks(chunk).collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Vec<R>>>> = Mutex::new(std::iter::repeat_with(|| None).take(parts.len()).collect());
    let store = |i: usize, r: Vec<R>| {
        if let Ok(mut d) = done.lock() {
            d[i] = Some(r);
        }
    };
    // Claims chunks until none is left; a chunk that panics is left for the caller.
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(i) else { break };
            if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(part))) {
                store(i, r);
            }
        }
    };
    rayon::in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| work());
        }
        work();
    });
    let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(items.len());
    for (r, part) in done.into_iter().zip(&parts) {
        out.extend(r.unwrap_or_else(|| f(part)));
    }
    out
}

#[cfg(test)]
mod split_tests {
    use super::split_map;

    #[test]
    fn split_map_keeps_order_for_any_thread_count() {
        let items: Vec<u32> = (0..101).collect();
        for threads in 0..5 {
            let got = split_map(&items, threads, |p| p.iter().map(|x| x * 2).collect());
            assert_eq!(got, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(split_map(&[] as &[u32], 2, |p| p.to_vec()).is_empty());
    }

    /// Work a helper thread panicked on is redone by the calling thread.
    #[test]
    fn split_map_redoes_what_a_panicking_helper_lost() {
        let caller = std::thread::current().id();
        let items: Vec<u32> = (0..200).collect();
        let got = split_map(&items, 3, |p| {
            if std::thread::current().id() != caller {
                panic!("helper thread fails (expected in this test)");
            }
            p.iter().map(|x| x + 1).collect()
        });
        assert_eq!(got, items.iter().map(|x| x + 1).collect::<Vec<_>>());
    }
}
