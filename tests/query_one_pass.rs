//! A query whose candidates all fit on one page is checked and read in one pass on
//! every core (`src/query/exec.rs`); a query with a smaller page takes the paged path
//! (check every candidate, sort, then read the page). Both must give the same
//! documents, in the same order, with the same total, and leave out what the session
//! may not see.

mod common;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::query::Query;
use chartvault::{Coding, Date, DocumentId, NewDocument, SecretKey, Session, Value, Vault, VaultKey, VaultOptions};

const PATIENTS: [&str; 3] = ["P1", "P2", "P3"];

fn vault_with_docs(n: usize) -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions { initial_policy: common::policy_with_loader(), ..VaultOptions::default() };
    let v = Vault::create(&dir.path().join("q.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();
    let loader = v
        .session(Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations))
        .unwrap();
    let base = Date::parse("2024-01-01").unwrap().days();
    let mut b = loader.batch().unwrap();
    for i in 0..n {
        let code = if i % 4 == 3 { "2345-7" } else { "4548-4" };
        let d = NewDocument::new(PATIENTS[i % 3], "Observation")
            .unwrap()
            .with("code", Value::from(Coding::new("loinc", code, None)))
            .with("effective", Value::Date(Date::from_days(base + (i * 7 % 40) as i32).unwrap()))
            .with("value", Value::Integer((i % 5) as i64))
            .with("status", Value::Text("final".into()));
        b.put(&d).unwrap();
    }
    b.commit().unwrap();
    (dir, v)
}

/// A physician caring for P1 and P2 only: P3's documents are never hits.
fn doctor(v: &Vault) -> Session {
    v.session(Principal::new("dr.one", Role::physician(), "h", Purpose::Treat).with_care_team(["P1", "P2"])).unwrap()
}

/// Every page of `src` with page size `limit`: the ids in order and each page's total.
fn pages(s: &Session, src: &str, limit: usize) -> (Vec<DocumentId>, Vec<usize>) {
    let mut q: Query = chartvault::query::parse(src).unwrap();
    q.limit = Some(limit);
    let (mut ids, mut totals) = (Vec::new(), Vec::new());
    loop {
        let r = s.query(&q).unwrap();
        assert!(r.documents.len() <= limit);
        for d in &r.documents {
            assert_ne!(d.patient, "P3", "{src}: a document outside the care team was returned");
            assert!(d.redacted.is_empty() && d.get("code").is_some(), "{src}: a hit came back without its fields");
        }
        ids.extend(r.documents.iter().map(|d| d.id));
        totals.push(r.total);
        match r.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return (ids, totals),
        }
    }
}

#[test]
fn one_pass_and_paged_queries_agree() {
    let (_dir, v) = vault_with_docs(90);
    let s = doctor(&v);
    for src in [
        "code = loinc:4548-4",
        "code = loinc:4548-4 order by effective desc",
        "code = loinc:4548-4 and value >= 2 order by value",
        "effective >= 2024-01-10 order by effective",
        "patient = P3",
    ] {
        // 90 candidates at most: limit 10,000 takes the one-pass path, limit 7 pages.
        let (one_pass, one_total) = pages(&s, src, 10_000);
        let (paged, paged_totals) = pages(&s, src, 7);
        assert_eq!(one_total.len(), 1, "{src}: one page expected");
        assert_eq!(one_pass, paged, "{src}: the two paths returned different documents or orders");
        assert!(
            paged_totals.iter().all(|t| *t == one_total[0]),
            "{src}: totals differ: {paged_totals:?} vs {one_total:?}"
        );
        assert_eq!(one_total[0], one_pass.len(), "{src}: total counts documents the session cannot see");
    }
    // The care team limits what matches: 60 of the 90 documents are P1's or P2's, and
    // three in four of those carry the code.
    let (all, _) = pages(&s, "code = loinc:4548-4", 10_000);
    assert_eq!(all.len(), 45);
    let (p3, _) = pages(&s, "patient = P3", 10_000);
    assert!(p3.is_empty());
}
