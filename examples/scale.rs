//! Builds a vault of N synthetic documents (default 100,000; `--docs N`), then times
//! opening it with a raw key (with and without its index checkpoint), a patient-chart
//! query and a code query. Used for the query issue's speed figures:
//! `cargo run --release --example scale -- --docs 1000000`.

use std::time::Instant;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::{Coding, Date, KdfParams, NewDocument, SecretKey, Value, Vault, VaultKey, VaultOptions};

fn main() -> chartvault::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--docs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().map_err(|e| chartvault::Error::Io { path: "tempdir".into(), source: e })?;
    // `--keep DIR` builds the vault once in DIR (key in DIR/key) and reuses it afterwards.
    let keep = args.iter().position(|a| a == "--keep").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    let base = keep.clone().unwrap_or_else(|| dir.path().to_path_buf());
    let path = base.join("scale.cv");
    let key =
        match keep.as_ref().and_then(|k| std::fs::read(k.join("key")).ok()).and_then(|b| SecretKey::from_slice(&b)) {
            Some(k) => k,
            None => SecretKey::random(),
        };
    // Checkpoints only where this program writes them (it times opens with and without).
    let opts = VaultOptions {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        checkpoint_every: 0,
        checkpoint_at_close: 0,
        ..VaultOptions::default()
    };
    let patients = n / 20;
    let codes = ["4548-4", "2345-7", "718-7", "2160-0", "39156-5"];
    let t = Instant::now();
    if !path.exists() {
        if let Some(k) = &keep {
            std::fs::create_dir_all(k).ok();
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&key.derive("scale example key file", &[]).mac(&[b"x"]));
            std::fs::write(k.join("key"), raw).ok();
        }
        let key =
            match keep.as_ref().and_then(|k| std::fs::read(k.join("key")).ok()).and_then(|b| SecretKey::from_slice(&b))
            {
                Some(k) => k,
                None => key.clone(),
            };
        let v = Vault::create(&path, VaultKey::Raw(&key), opts.clone())?;
        let dr = v.session(
            Principal::new("loader", Role::physician(), "h", Purpose::Treat)
                .with_care_team((0..patients).map(|p| format!("MRN-{p}"))),
        )?;
        let mut i = 0;
        while i < n {
            let mut b = dr.batch()?;
            for _ in 0..1000.min(n - i) {
                let p = i % patients.max(1);
                let day = (i % 1500) as i32;
                b.put(
                    &NewDocument::new(&format!("MRN-{p}"), "Observation")?
                        .with("code", Value::from(Coding::new("loinc", codes[i % codes.len()], Some("lab"))))
                        .with(
                            "effective",
                            Value::Date(Date::from_days(19000 + day).unwrap_or(Date::parse("2024-01-01")?)),
                        )
                        .with("value", Value::Decimal(chartvault::Decimal::new((i % 1000) as i64, 1)))
                        .with("status", Value::Text("final".into()))
                        .with("note", Value::Text(format!("routine result {i} reviewed with patient"))),
                )?;
                i += 1;
            }
            b.commit()?;
        }
        v.checkpoint()?;
        v.close()?;
    }
    let key =
        match keep.as_ref().and_then(|k| std::fs::read(k.join("key")).ok()).and_then(|b| SecretKey::from_slice(&b)) {
            Some(k) => k,
            None => key,
        };
    println!("load {n} docs: {:.2?}", t.elapsed());
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("file size: {:.1} MiB", size as f64 / 1048576.0);
    if let Some(reads) =
        args.iter().position(|a| a == "--reads").and_then(|i| args.get(i + 1)).and_then(|s| s.parse::<usize>().ok())
    {
        let v = Vault::open(&path, VaultKey::Raw(&key), opts.clone())?;
        let ids: Vec<chartvault::DocumentId> =
            v.store().read_state().catalog.docs.keys().copied().take(10_000).collect();
        let dr = v.session(
            Principal::new("dr", Role::physician(), "h", Purpose::Treat)
                .with_care_team((0..patients).map(|p| format!("MRN-{p}"))),
        )?;
        let t = Instant::now();
        for i in 0..reads {
            dr.get(&ids[i % ids.len()])?;
        }
        println!("{reads} point reads: {:.2?} each", t.elapsed() / reads as u32);
        return Ok(());
    }
    if args.iter().any(|a| a == "--open-only") {
        let t = Instant::now();
        let v = Vault::open(&path, VaultKey::Raw(&key), opts.clone())?;
        println!("open (checkpoint {:?}): {:.2?}", v.open_report().checkpoint.is_some(), t.elapsed());
        // What comes after an open from a checkpoint: a chart decodes only its
        // patient's entry; the first query decodes the rest and builds the indexes.
        let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["MRN-7"]))?;
        let t = Instant::now();
        let n = dr.chart("MRN-7")?.len();
        println!("  first chart ({n} docs): {:.2?}", t.elapsed());
        let t = Instant::now();
        let r = dr.query_str("patient = \"MRN-7\" and code = loinc:4548-4 and effective >= 2022-01-01")?;
        println!("  first query ({} docs): {:.2?}", r.total, t.elapsed());
        return Ok(());
    }
    for pass in 0..2 {
        let t = Instant::now();
        let v = Vault::open(&path, VaultKey::Raw(&key), opts.clone())?;
        println!("open (checkpoint {:?}): {:.2?}", v.open_report().checkpoint.is_some(), t.elapsed());
        let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["MRN-7"]))?;
        let t = Instant::now();
        let r = dr.query_str("patient = \"MRN-7\"")?;
        println!("  chart query ({} docs): {:.2?}", r.total, t.elapsed());
        let t = Instant::now();
        let r = dr.query_str("patient = \"MRN-7\" and code = loinc:4548-4 and effective >= 2022-01-01")?;
        println!("  chart+code+date query ({} docs): {:.2?}", r.total, t.elapsed());
        let t = Instant::now();
        let reps = 1000;
        for _ in 0..reps {
            dr.query_str("patient = \"MRN-7\" and code = loinc:4548-4")?;
        }
        println!("  repeated chart+code query: {:.2?} each", t.elapsed() / reps);
        drop(dr);
        v.close()?;
        if pass == 0 {
            // Second pass: without the checkpoint (full rebuild).
            let v = Vault::open(&path, VaultKey::Raw(&key), opts.clone())?;
            v.store().set_checkpoint_pointer(0)?;
            v.close()?;
        }
    }
    // Leave a kept vault with a fresh checkpoint for the next run.
    let v = Vault::open(&path, VaultKey::Raw(&key), opts)?;
    v.checkpoint()?;
    v.close()?;
    Ok(())
}
