//! Times the value-index flushes of a bulk load, without any I/O or crypto: a catalog
//! gets `--docs` documents with about ten index terms each (shaped like the bench
//! workload's: codes, statuses, dates, datetimes, decimals, identifiers), flushed
//! every `--every` documents as a long run of commits would be.
//!
//! ```text
//! cargo run --release --example flush_values -- --docs 100000 --every 16383
//! valgrind --tool=callgrind --toggle-collect='*flush_values*' \
//!     target/release/examples/flush_values --docs 100000
//! ```
//!
//! Prints the time of each flush and the total. With `--lazy`, the catalog is one
//! whose value indexes are built on first use (as after an open that replays the whole
//! log): no flushes, and the time of that first build is printed instead.

use std::time::Instant;

use chartvault::DocumentId;
use chartvault::format::body::{IndexKey, IndexTerm};
use chartvault::model::value::Decimal;
use chartvault::model::{Kind, Label, LabelSet};
use chartvault::store::catalog::{Catalog, NewVersion, TermRegistry, VersionLoc};

/// xorshift64: deterministic terms without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn term(field: &str, key: IndexKey) -> IndexTerm {
    IndexTerm { field: field.into(), labels: vec![Label::normal()], key }
}

fn version(i: u64, r: &mut Rng, kind: &Kind, registry: &TermRegistry) -> NewVersion {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_le_bytes());
    id[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    let day = 19_000 + r.below(730) as i32;
    let patient = i % 10_000;
    let terms = vec![
        term("code", IndexKey::Code("http://loinc.org".into(), format!("{}-{}", 1000 + r.below(500), r.below(10)))),
        term("category", IndexKey::Text(if r.below(2) == 0 { "laboratory" } else { "problem-list-item" }.into())),
        term("status", IndexKey::Text(["final", "amended", "preliminary", "cancelled"][r.below(4) as usize].into())),
        term("effective", IndexKey::Date(day)),
        term("issued", IndexKey::DateTime(i64::from(day) * 86_400_000_000 + r.below(3 * 86_400) as i64 * 1_000_000)),
        term("value", IndexKey::Decimal(Decimal::new(r.below(3000) as i64, 1))),
        term("identifier", IndexKey::Text(format!("CLM-{:012}", r.below(1_000_000_000_000)))),
        term("birthDate", IndexKey::Date(-10_000 + (patient * 7 % 25_000) as i32)),
        term("type", IndexKey::Code("http://snomed.info/sct".into(), format!("{}", 80_000 + r.below(40)))),
        term("performed", IndexKey::Boolean(r.below(2) == 0)),
    ];
    NewVersion {
        id: DocumentId(id),
        patient_slot: patient as u32,
        kind: kind.clone(),
        created_us: i as i64,
        loc: VersionLoc { version: 1, offset: 8192 + i * 1024, updated_us: i as i64 },
        labels: LabelSet::new(),
        terms: registry.pack(&terms),
    }
}

fn main() {
    let mut docs = 100_000u64;
    let mut every = 16_383u64;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let lazy = args.iter().any(|a| a == "--lazy");
    args.retain(|a| a != "--lazy");
    for pair in args.chunks(2) {
        let v = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), v) {
            ("--docs", Some(v)) => docs = v,
            ("--every", Some(v)) => every = v,
            _ => {
                eprintln!("usage: flush_values [--docs N] [--every K] [--lazy]");
                std::process::exit(2);
            }
        }
    }
    let kind = Kind::new("Observation").expect("kind");
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let registry = TermRegistry::default();
    if lazy {
        let mut cat = Catalog::lazy();
        for i in 0..docs {
            cat.apply(version(i, &mut r, &kind, &registry), i + 1);
        }
        let t = Instant::now();
        let postings: usize = cat.values().values().flat_map(|m| m.values()).map(Vec::len).sum();
        println!("lazy build of {docs} documents: {:.1} ms; {postings} postings", t.elapsed().as_secs_f64() * 1e3);
        return;
    }
    let mut cat = Catalog::default();
    let mut total = 0.0;
    let mut flushes = 0;
    for i in 0..docs {
        cat.apply(version(i, &mut r, &kind, &registry), i + 1);
        if (i + 1) % every.max(1) == 0 || i + 1 == docs {
            let t = Instant::now();
            cat.flush_values();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            println!("flush at {:>7} documents: {ms:7.2} ms", i + 1);
            total += ms;
            flushes += 1;
        }
    }
    let postings: usize = cat.values().values().flat_map(|m| m.values()).map(Vec::len).sum();
    println!("{flushes} flushes, {total:.1} ms in all; {postings} postings");
}
