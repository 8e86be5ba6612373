//! Property: paging through a query with a cursor returns every document that
//! matched before the first page exactly once and in order, even while new matching
//! and non-matching documents are appended between pages (by interleaved code or by
//! another thread); new documents may or may not appear, but nothing is skipped or
//! repeated. A cursor only continues the query (and user) it was made for: used with
//! another query it is `InvalidQuery`, and so is any tampered cursor.

mod common;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use chartvault::access::{Principal, Purpose, Role};
use chartvault::query::{CmpOp, Literal, Query, QueryBuilder};
use chartvault::{
    Coding, Date, Document, DocumentId, Error, NewDocument, SecretKey, Session, Value, Vault, VaultKey, VaultOptions,
};

const PATIENTS: [&str; 3] = ["P1", "P2", "P3"];
const MATCH: &str = "4548-4";
const OTHER: &str = "2345-7";

fn vault() -> (tempfile::TempDir, Vault) {
    let p = common::policy_with_loader();
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions { initial_policy: p, checkpoint_every: 0, ..VaultOptions::default() };
    let v = Vault::create(&dir.path().join("p.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();
    (dir, v)
}

fn loader(v: &Vault) -> Session {
    v.session(Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations)).unwrap()
}
fn doctor(v: &Vault, user: &str) -> Session {
    v.session(Principal::new(user, Role::physician(), "h", Purpose::Treat).with_care_team(PATIENTS)).unwrap()
}

/// A document; `day` is days after 2024-01-01, `value` small so that ties happen.
fn doc(patient: &str, code: &str, day: i32, value: i64, status: &str) -> NewDocument {
    let base = Date::parse("2024-01-01").unwrap().days();
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", code, None)))
        .with("effective", Value::Date(Date::from_days(base + day).unwrap()))
        .with("value", Value::Integer(value))
        .with("status", Value::Text(status.into()))
}

/// A small deterministic generator (xorshift), so runs are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_doc(rng: &mut Rng) -> (bool, NewDocument) {
    let matching = rng.next(3) != 0;
    let code = if matching { MATCH } else { OTHER };
    let status = if rng.next(5) == 0 { "cancelled" } else { "final" };
    let day = rng.next(60) as i32 - 10; // before, inside and after the initial range
    (matching, doc(PATIENTS[rng.next(3) as usize], code, day, rng.next(4) as i64, status))
}

fn seed(v: &Vault, n: usize, rng: &mut Rng) {
    let s = loader(v);
    let mut b = s.batch().unwrap();
    for _ in 0..n {
        b.put(&random_doc(rng).1).unwrap();
    }
    b.commit().unwrap();
}

/// The sort key a document has for an order field (what the query language defines:
/// dates on the time line, integers numerically), for checking the order of pages.
fn key(d: &Document, field: &str) -> Option<i64> {
    match (field, d.get(field)) {
        ("effective", Some(Value::Date(x))) => Some(i64::from(x.days())),
        ("value", Some(Value::Integer(i))) => Some(*i),
        _ => None,
    }
}

/// Sorting of the query: the order field (if any), then creation time, then id.
fn cmp_docs(a: &Document, b: &Document, order: Option<(&str, bool)>) -> Ordering {
    let k = match order {
        Some((f, desc)) => {
            let o = key(a, f).cmp(&key(b, f));
            if desc { o.reverse() } else { o }
        }
        None => Ordering::Equal,
    };
    k.then(a.created.unix_micros().cmp(&b.created.unix_micros())).then(a.id.0.cmp(&b.id.0))
}

fn matches(d: &Document, src: &str) -> bool {
    let code_ok = matches!(d.get("code"), Some(Value::Code(c)) if c.code == MATCH);
    if src.contains("cancelled") {
        code_ok && d.get("status") != Some(&Value::Text("cancelled".into()))
    } else {
        code_ok
    }
}

struct Case {
    src: &'static str,
    order: Option<(&'static str, bool)>,
    limit: usize,
}

const CASES: &[Case] = &[
    Case { src: "code = loinc:4548-4", order: None, limit: 3 },
    Case { src: "code = loinc:4548-4 order by effective desc", order: Some(("effective", true)), limit: 4 },
    Case { src: "code = loinc:4548-4 order by value", order: Some(("value", false)), limit: 5 },
    Case {
        src: "code = loinc:4548-4 and not status = \"cancelled\" order by effective",
        order: Some(("effective", false)),
        limit: 2,
    },
];

/// Every document that matches now, in query order (one big page).
fn everything(s: &Session, src: &str) -> Vec<Document> {
    let mut q = chartvault::query::parse(src).unwrap();
    q.limit = Some(10_000);
    let r = s.query(&q).unwrap();
    assert!(r.next_cursor.is_none());
    assert_eq!(r.total, r.documents.len());
    r.documents
}

/// Checks one paging run: `before` is what matched before the first page, `seen` the
/// concatenated pages, `added` the matching documents appended meanwhile.
fn check_run(case: &Case, before: &[Document], seen: &[Document], added: &BTreeSet<DocumentId>) {
    let src = case.src;
    let mut count: BTreeMap<DocumentId, usize> = BTreeMap::new();
    for d in seen {
        *count.entry(d.id).or_default() += 1;
        assert!(matches(d, src), "{src}: a non-matching document was returned");
    }
    assert!(count.values().all(|&c| c == 1), "{src}: a document was returned twice");
    for d in before {
        assert_eq!(count.get(&d.id), Some(&1), "{src}: a document that matched before the first page was skipped");
    }
    let before_ids: BTreeSet<DocumentId> = before.iter().map(|d| d.id).collect();
    assert!(seen.iter().all(|d| before_ids.contains(&d.id) || added.contains(&d.id)), "{src}: a document from nowhere");
    // The pages are in query order ...
    for w in seen.windows(2) {
        assert_eq!(cmp_docs(&w[0], &w[1], case.order), Ordering::Less, "{src}: pages out of order");
    }
    // ... and the old documents keep the order they had.
    let old_order: Vec<DocumentId> = seen.iter().filter(|d| before_ids.contains(&d.id)).map(|d| d.id).collect();
    assert_eq!(old_order, before.iter().map(|d| d.id).collect::<Vec<_>>(), "{src}");
}

#[test]
fn paging_while_documents_are_appended_between_pages() {
    let (_d, v) = vault();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    seed(&v, 60, &mut rng);
    let dr = doctor(&v, "dr");
    let writer = loader(&v);
    for case in CASES {
        let before = everything(&dr, case.src);
        assert!(before.len() > 3 * case.limit, "{}: too few matches to page through", case.src);
        let mut q = chartvault::query::parse(case.src).unwrap();
        q.limit = Some(case.limit);
        let mut seen = Vec::new();
        let mut added = BTreeSet::new();
        let mut pages = 0;
        loop {
            let r = dr.query(&q).unwrap();
            assert!(r.documents.len() <= case.limit);
            assert!(r.total >= before.len(), "{}: total shrank", case.src);
            pages += 1;
            // Between pages: new documents, matching and not, with sort keys before,
            // at and after the cursor's position (the last document of the page).
            if pages <= 12 {
                let last_day = r.documents.last().and_then(|d| key(d, "effective")).unwrap_or(0) as i32
                    - Date::parse("2024-01-01").unwrap().days();
                let mut b = writer.batch().unwrap();
                for (code, day, value) in [
                    (MATCH, last_day, 1),
                    (MATCH, -100, 0),
                    (MATCH, 400, 3),
                    (OTHER, last_day, 2),
                    (MATCH, last_day + 1, 0),
                ] {
                    let id = b.put(&doc(PATIENTS[pages % 3], code, day, value, "final")).unwrap();
                    if code == MATCH {
                        added.insert(id);
                    }
                }
                b.commit().unwrap();
                let (m, d) = random_doc(&mut rng);
                let id = writer.put(&d).unwrap();
                if m {
                    added.insert(id);
                }
            }
            let more = r.next_cursor.clone();
            seen.extend(r.documents);
            match more {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
            assert!(pages < 500, "{}: runaway pagination", case.src);
        }
        check_run(case, &before, &seen, &added);
        // New documents placed after the position reached do show up (the cursor is a
        // position, not a snapshot): the late-dated ones in ascending date order.
        if case.order == Some(("effective", false)) {
            assert!(
                seen.iter().any(|d| added.contains(&d.id)),
                "{}: appended documents after the cursor never appeared",
                case.src
            );
        }
    }
}

#[test]
fn paging_while_another_thread_appends() {
    let (_d, v) = vault();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    seed(&v, 50, &mut rng);
    let dr = doctor(&v, "dr");
    let writer = loader(&v);
    for case in CASES {
        let before = everything(&dr, case.src);
        let done = AtomicBool::new(false);
        let (seen, added) = std::thread::scope(|scope| {
            let w = scope.spawn(|| {
                let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ case.limit as u64);
                let mut added = BTreeSet::new();
                // Bounded, so that the reader cannot chase the writer forever.
                for i in 0..80 {
                    if done.load(AtomicOrdering::Relaxed) && i >= 10 {
                        break;
                    }
                    let (m, d) = random_doc(&mut rng);
                    let id = writer.put(&d).unwrap();
                    if m {
                        added.insert(id);
                    }
                }
                added
            });
            let mut q = chartvault::query::parse(case.src).unwrap();
            q.limit = Some(case.limit);
            let mut seen = Vec::new();
            loop {
                let r = dr.query(&q).unwrap();
                let more = r.next_cursor.clone();
                seen.extend(r.documents);
                std::thread::yield_now();
                match more {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
            done.store(true, AtomicOrdering::Relaxed);
            (seen, w.join().unwrap())
        });
        check_run(case, &before, &seen, &added);
    }
}

fn page_one(s: &Session, q: &Query) -> String {
    s.query(q).unwrap().next_cursor.expect("a second page")
}

fn is_invalid_query(r: chartvault::Result<chartvault::query::QueryResult>) -> bool {
    matches!(r, Err(Error::InvalidQuery(_)))
}

#[test]
fn a_cursor_only_continues_its_own_query() {
    let (_d, v) = vault();
    seed(&v, 40, &mut Rng(7));
    let dr = doctor(&v, "dr");
    let code = |c: &str| Literal::Code("http://loinc.org".into(), c.into());
    let q = QueryBuilder::new().cmp("code", CmpOp::Eq, code(MATCH)).order_by("effective", true).limit(3).build();
    let c = page_one(&dr, &q);
    let with = |q: &Query| Query { cursor: Some(c.clone()), ..q.clone() };
    // The same query continues, whether written with the builder or as text, and with
    // another page size.
    let second = dr.query(&with(&q)).unwrap();
    assert_eq!(second.documents.len(), 3);
    let text = chartvault::query::parse("code = loinc:4548-4 order by effective desc limit 3").unwrap();
    assert_eq!(dr.query(&with(&text)).unwrap().documents, second.documents);
    let bigger = Query { limit: Some(50), ..q.clone() };
    assert_eq!(dr.query(&with(&bigger)).unwrap().documents[..3], second.documents[..]);
    // A new session of the same user may continue too.
    assert_eq!(doctor(&v, "dr").query(&with(&q)).unwrap().documents, second.documents);
    // Any other query: refused.
    let others = [
        QueryBuilder::new().cmp("code", CmpOp::Eq, code(OTHER)).order_by("effective", true).limit(3).build(),
        QueryBuilder::new().cmp("code", CmpOp::Eq, code(MATCH)).order_by("effective", false).limit(3).build(),
        QueryBuilder::new().cmp("code", CmpOp::Eq, code(MATCH)).order_by("value", true).limit(3).build(),
        QueryBuilder::new().cmp("code", CmpOp::Eq, code(MATCH)).limit(3).build(),
        QueryBuilder::new()
            .cmp("code", CmpOp::Eq, code(MATCH))
            .patient("P1")
            .order_by("effective", true)
            .limit(3)
            .build(),
        QueryBuilder::new().order_by("effective", true).limit(3).build(),
        QueryBuilder::new().limit(3).build(),
    ];
    for o in &others {
        assert!(is_invalid_query(dr.query(&with(o))), "cursor accepted by {o}");
    }
    // Another user's session: refused (cursors are sealed per user).
    assert!(is_invalid_query(doctor(&v, "dr-other").query(&with(&q))));
    // Another vault, same user: refused.
    let (_d2, v2) = vault();
    seed(&v2, 10, &mut Rng(7));
    assert!(is_invalid_query(doctor(&v2, "dr").query(&with(&q))));
}

#[test]
fn a_tampered_cursor_is_rejected() {
    let (_d, v) = vault();
    seed(&v, 30, &mut Rng(11));
    let dr = doctor(&v, "dr");
    let q = chartvault::query::parse("code = loinc:4548-4 order by value limit 2").unwrap();
    let c = page_one(&dr, &q);
    assert!(c.len() > 8 && c.len().is_multiple_of(2));
    let flip = |i: usize| {
        let mut b = c.clone().into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let mut tampered: Vec<String> = (0..c.len()).step_by(7).map(flip).collect();
    tampered.extend([
        flip(c.len() - 1),
        c[..c.len() - 2].to_string(),
        format!("{c}00"),
        c[1..].to_string(),
        format!("{c}0"),
        String::new(),
        "zz".repeat(c.len() / 2),
        c.replacen(&c[..2], "g0", 1),
        format!("{}{}", &c[c.len() / 2..], &c[..c.len() / 2]),
        "é".repeat(c.len() / 2),
        format!("a{}b", "é".repeat(c.len() / 2 - 1)),
        "0".repeat(c.len()),
        "ab".repeat(5000),
    ]);
    for t in &tampered {
        assert_ne!(t, &c);
        let r = dr.query(&Query { cursor: Some(t.clone()), ..q.clone() });
        assert!(is_invalid_query(r), "tampered cursor {t:?} was not rejected");
    }
    // The genuine cursor still works (in either hex case).
    assert_eq!(dr.query(&Query { cursor: Some(c.clone()), ..q.clone() }).unwrap().documents.len(), 2);
    assert_eq!(dr.query(&Query { cursor: Some(c.to_uppercase()), ..q.clone() }).unwrap().documents.len(), 2);
}
