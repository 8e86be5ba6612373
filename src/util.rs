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

/// Applies `f` to contiguous chunks of `items` on up to `threads` threads (this one and
/// scoped threads joined before returning) and concatenates the results in order.
///
/// The chunks are small and claimed one at a time, so a thread that gets no CPU for a
/// while (a busy machine) leaves its share to the others instead of making this thread
/// wait for it: this thread waits at most for the chunks already in progress. A chunk
/// whose thread panicked is redone on this thread, so the result is always complete.
pub(crate) fn split_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    if threads < 2 || items.len() < 2 {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads * CHUNKS_PER_THREAD).max(1);
    let parts: Vec<&[T]> = items.chunks(chunk).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(part) = parts.get(i) else { return out };
            out.push((i, f(part)));
        }
    };
    let mut done: Vec<Option<Vec<R>>> = std::iter::repeat_with(|| None).take(parts.len()).collect();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        for (i, r) in work() {
            done[i] = Some(r);
        }
        for h in helpers {
            if let Ok(v) = h.join() {
                for (i, r) in v {
                    done[i] = Some(r);
                }
            }
        }
    });
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
