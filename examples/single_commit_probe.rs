//! Single-document durable commits next to a same-time probe (`write` ~1 KiB +
//! `fdatasync` on an appending file in the same directory), alternating, as the
//! benchmark does; prints the mean and median of both.
//!
//! ```text
//! cargo run --release --example single_commit_probe -- DIR [COMMITS] [PRELOAD]
//! ```
//! Run it on a tmpfs (`/dev/shm`) to see the CPU cost alone.

use std::io::Write;
use std::time::{Duration, Instant};

use chartvault::access::{Principal, Purpose, Role};
use chartvault::{Label, NewDocument, SecretKey, Value, Vault, VaultKey, VaultOptions};

fn doc(i: u64) -> NewDocument {
    let demo = || vec![Label::demographics()];
    let fin = || vec![Label::financial()];
    NewDocument::new(&format!("MRN-{}", i % 50), "Observation")
        .unwrap()
        .with_labeled("name", Value::Text(format!("Patient Number {i}")), demo())
        .with_labeled("address", Value::Text(format!("{i} Elm Street, Springfield, 01234")), demo())
        .with_labeled("phone", Value::Text("+1 555 0100 200".into()), demo())
        .with("status", Value::Text("final".into()))
        .with("category", Value::Text("laboratory".into()))
        .with("value", Value::Integer(i as i64))
        .with("unit", Value::Text("mmol/L".into()))
        .with("interpretation", Value::Text("normal".into()))
        .with("performer", Value::Text("Dr. Example Performer".into()))
        .with("note", Value::Text("x".repeat(400)))
        .with_labeled("billingCode", Value::Text("CPT-80053".into()), fin())
        .with_labeled("payer", Value::Text("Example Health Plan".into()), fin())
        .with_labeled("claimId", Value::Text(format!("CLM-{i:08}")), fin())
}

/// (write requests completed, sectors written) of the first virtio disk, if any.
fn disk_writes() -> Option<(u64, u64)> {
    let dev = std::env::var("PROBE_DEV").ok()?;
    let s = std::fs::read_to_string(format!("/sys/block/{dev}/stat")).ok()?;
    let f: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Some((*f.get(4)?, *f.get(6)?))
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    if std::env::var_os("PROBE_PERCENTILES").is_some() {
        let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize].as_secs_f64() * 1e6;
        eprintln!("p10 {:.0} p50 {:.0} p90 {:.0} p99 {:.0} max {:.0} µs", q(0.1), q(0.5), q(0.9), q(0.99), q(1.0));
    }
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64;
    (mean * 1e6, v[v.len() / 2].as_secs_f64() * 1e6)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: single_commit_probe DIR [COMMITS] [PRELOAD]")?);
    let n: u64 = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let preload: u64 = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("probe.cv");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(chartvault::store::keyring_path(&path));
    let mut policy = chartvault::access::Policy::hospital_default();
    for g in &mut policy.grants {
        if g.roles.contains(&Role::physician()) && !g.labels.contains(&Label::financial()) {
            g.labels.push(Label::financial());
        }
    }
    let opts = VaultOptions { initial_policy: policy, ..VaultOptions::default() };
    let v = Vault::create(&path, VaultKey::Raw(&SecretKey::random()), opts)?;
    let s = v.session(
        Principal::new("dr", Role::physician(), "general", Purpose::Treat)
            .with_care_team((0..50).map(|i| format!("MRN-{i}"))),
    )?;
    let mut i = 0;
    while i < preload {
        let mut b = s.batch()?;
        for _ in 0..1000.min(preload - i) {
            b.put(&doc(i))?;
            i += 1;
        }
        b.commit()?;
    }
    let probe_path = dir.join("probe.bin");
    let mut probe = std::fs::File::create(&probe_path)?;
    let kib = [0x5au8; 1024];
    let (mut commits, mut probes) = (Vec::new(), Vec::new());
    let skip_probe = std::env::var_os("PROBE_SKIP").is_some();
    let io_before = disk_writes();
    for j in 0..n {
        let t = Instant::now();
        if !skip_probe {
            probe.write_all(&kib)?;
            probe.sync_data()?;
        }
        probes.push(t.elapsed());
        let t = Instant::now();
        s.put(&doc(preload + j))?;
        let d = t.elapsed();
        if std::env::var_os("PROBE_OUTLIERS").is_some() && d > Duration::from_micros(1000) {
            eprintln!("commit {j}: {} µs", d.as_micros());
        }
        commits.push(d);
    }
    if let (Some(a), Some(b)) = (io_before, disk_writes()) {
        eprintln!(
            "block device: {:.2} write requests, {:.1} KiB written per iteration",
            (b.0 - a.0) as f64 / n as f64,
            (b.1 - a.1) as f64 / 2.0 / n as f64
        );
    }
    let (cm, cmed) = stats(commits);
    let (pm, pmed) = stats(probes);
    println!(
        "commit: mean {cm:.1} µs, median {cmed:.1} µs; probe: mean {pm:.1} µs, median {pmed:.1} µs; ratio probe/commit (mean) {:.2}",
        pm / cm
    );
    drop(s);
    v.close()?;
    std::fs::remove_file(&probe_path)?;
    Ok(())
}
