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

/// The library's pool of helper threads: one fewer than the cores, since the calling
/// thread always works too ([`split_map`], [`pipeline`]). Not rayon's global pool, which
/// has a thread per core (and belongs to the application): with two cores, its
/// second idle thread spun on `sched_yield` beside the two working ones after every
/// task (91% of a code query's context switches, a fifth of its CPU time in the
/// kernel). `None` on one core, or if the threads cannot be started (the work then
/// runs on the calling thread alone).
fn helpers() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let n = cores().saturating_sub(1);
        if n == 0 {
            return None;
        }
        rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("chartvault-helper-{i}")).build().ok()
    })
    .as_ref()
}

/// Applies `f` to contiguous chunks of `items` on up to `threads` threads (this one and
/// `threads - 1` tasks on the library's helper pool, all finished before returning) and
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
    // The pool starts on first use only (a small read never starts it).
    let Some(pool) = (threads >= 2 && items.len() >= 2).then(helpers).flatten() else {
        return f(items);
    };
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
    pool.in_place_scope(|scope| {
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

/// A chunk of [`pipeline`]'s work: unclaimed, claimed, or done (or its thread panicked).
enum Stage<'t, T, R> {
    Todo(&'t mut [T]),
    Claimed,
    Done(Vec<R>),
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Applies `work` to every item of `items` in place on up to `threads` threads, and
/// hands the results to `consume` on this thread, in item order, while the other
/// threads are still working: the serial `consume` overlaps the parallel `work`
/// instead of following it. This thread works on chunks too whenever the next result
/// in order is not ready. Stops at the first error of `consume` (chunks not yet
/// claimed are left as they are) and returns it. A panic in `work` on another thread
/// is resumed on this one.
pub(crate) fn pipeline<T: Send, R: Send, E>(
    items: &mut [T],
    threads: usize,
    work: impl Fn(&mut T) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // The pool starts on first use only (a small read never starts it).
    let Some(pool) = (threads >= 2 && items.len() >= 2).then(helpers).flatten() else {
        for t in items.iter_mut() {
            consume(work(t))?;
        }
        return Ok(());
    };
    let chunk = items.len().div_ceil(threads * CHUNKS_PER_THREAD).max(1);
    let stages: Vec<Mutex<Stage<'_, T, R>>> = items.chunks_mut(chunk).map(|c| Mutex::new(Stage::Todo(c))).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let lock = |i: usize| stages[i].lock().unwrap_or_else(|p| p.into_inner());
    // Claims the next chunk and works it; false once none is left (or after a stop).
    let claim = || {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= stages.len() {
            return false;
        }
        let Stage::Todo(part) = std::mem::replace(&mut *lock(i), Stage::Claimed) else { return true };
        let done = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part.iter_mut().map(&work).collect()))
        {
            Ok(r) => Stage::Done(r),
            Err(p) => Stage::Panicked(p),
        };
        *lock(i) = done;
        true
    };
    let mut result = Ok(());
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| while claim() {});
        }
        let mut at = 0;
        while at < stages.len() {
            // Taken out under one hold of the lock: a thread may be storing it.
            let taken = {
                let mut g = lock(at);
                match &*g {
                    Stage::Done(_) | Stage::Panicked(_) => std::mem::replace(&mut *g, Stage::Claimed),
                    _ => Stage::Claimed,
                }
            };
            let ready = match taken {
                Stage::Done(r) => Some(r),
                Stage::Panicked(p) => {
                    stop.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(p)
                }
                _ => None,
            };
            match ready {
                Some(r) => {
                    at += 1;
                    if let Err(e) = r.into_iter().try_for_each(&mut consume) {
                        stop.store(true, Ordering::Relaxed);
                        result = Err(e);
                        return;
                    }
                }
                // The next chunk in order is not done: work on another meanwhile, or
                // wait for the thread that has it.
                None => {
                    if !claim() {
                        std::thread::yield_now();
                    }
                }
            }
        }
    });
    result
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

    /// `pipeline` consumes every result in order, for any thread count, and stops at
    /// the first error of `consume`.
    #[test]
    fn pipeline_consumes_in_order_and_stops_at_an_error() {
        for threads in 0..4 {
            let mut items: Vec<u32> = (0..103).collect();
            let mut seen = Vec::new();
            let r: Result<(), ()> = super::pipeline(
                &mut items,
                threads,
                |x| {
                    *x += 1;
                    *x * 2
                },
                |y| {
                    seen.push(y);
                    Ok(())
                },
            );
            assert!(r.is_ok());
            assert_eq!(seen, (1..104).map(|x| x * 2).collect::<Vec<_>>());
            assert_eq!(items, (1..104).collect::<Vec<_>>());
        }
        let mut items: Vec<u32> = (0..500).collect();
        let mut n = 0;
        let r = super::pipeline(
            &mut items,
            2,
            |x| *x,
            |y| {
                n += 1;
                if y == 40 { Err(y) } else { Ok(()) }
            },
        );
        assert_eq!((r, n), (Err(40), 41));
    }

    /// A panic in `work` on a helper thread reaches the caller instead of hanging it.
    #[test]
    fn pipeline_resumes_a_helper_panic() {
        let caller = std::thread::current().id();
        let r = std::panic::catch_unwind(|| {
            let mut items: Vec<u32> = (0..200).collect();
            let _ = super::pipeline(
                &mut items,
                2,
                |x| {
                    if std::thread::current().id() != caller {
                        panic!("helper thread fails (expected in this test)");
                    }
                    // Leave the helper time to claim a chunk.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    *x
                },
                |_| Ok::<(), ()>(()),
            );
        });
        assert!(r.is_err());
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
