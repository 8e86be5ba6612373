//! Handle registry: C callers hold checked ids, never pointers into Rust memory, so a
//! closed, double-closed or forged handle is detected instead of being undefined
//! behaviour. Ids are never reused within a process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use engine::{Session, Vault};

use crate::status::{Fail, cv_status};

static NEXT: AtomicU64 = AtomicU64::new(1);

struct Registry {
    vaults: BTreeMap<u64, Vault>,
    sessions: BTreeMap<u64, Arc<Session>>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry { vaults: BTreeMap::new(), sessions: BTreeMap::new() }))
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

fn next_id() -> u64 {
    // Mix a counter so handles are not small guessable integers; 0 is never issued.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1) & 0x7FFF_FFFF_FFFF_FFFF
}

fn invalid(kind: &str) -> Fail {
    Fail(cv_status::CV_ERR_INVALID_HANDLE, format!("invalid {kind} handle: closed, freed or never issued"))
}

pub(crate) fn add_vault(v: Vault) -> u64 {
    let id = next_id();
    lock().vaults.insert(id, v);
    id
}

pub(crate) fn vault(id: u64) -> Result<Vault, Fail> {
    lock().vaults.get(&id).cloned().ok_or_else(|| invalid("vault"))
}

pub(crate) fn remove_vault(id: u64) -> Result<Vault, Fail> {
    lock().vaults.remove(&id).ok_or_else(|| invalid("vault"))
}

pub(crate) fn add_session(s: Session) -> u64 {
    let id = next_id();
    lock().sessions.insert(id, Arc::new(s));
    id
}

pub(crate) fn session(id: u64) -> Result<Arc<Session>, Fail> {
    lock().sessions.get(&id).cloned().ok_or_else(|| invalid("session"))
}

pub(crate) fn remove_session(id: u64) -> Result<Arc<Session>, Fail> {
    lock().sessions.remove(&id).ok_or_else(|| invalid("session"))
}
