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

/// Applies `f` to `threads` contiguous parts of `items` (the first on this thread, the
/// others on scoped threads that are joined before returning) and concatenates the
/// results in order. A part whose thread panicked is redone on this thread, so the
/// result is always complete.
pub(crate) fn split_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    if threads < 2 || items.len() < 2 {
        return f(items);
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let mut parts = items.chunks(chunk);
        let mine = parts.next().unwrap_or(&[]);
        let others: Vec<_> = parts.map(|part| (part, scope.spawn(move || f(part)))).collect();
        let mut out = f(mine);
        for (part, handle) in others {
            match handle.join() {
                Ok(mut v) => out.append(&mut v),
                Err(_) => out.extend(f(part)),
            }
        }
        out
    })
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
}
