//! `SessionBatch::put_all` (bulk staging prepared on every core) behaves exactly like
//! `put` called for each document in order: the same documents, ids in order, the
//! same audit entries, the same refusals (validation errors and audited denials), and
//! nothing staged when a document is refused.

mod common;

use chartvault::access::Principal;
use chartvault::audit::{Action, Outcome};
use chartvault::*;
use common::{key, opts, physician};

const PATIENTS: usize = 7;

/// `n` documents over `PATIENTS` patients, with demographics, financial and clinical
/// fields (three label groups), the value of `seq` being the document's position.
fn docs(n: usize) -> Vec<NewDocument> {
    (0..n)
        .map(|i| {
            NewDocument::new(&format!("MRN-{}", i % PATIENTS), "Observation")
                .unwrap()
                .with_labeled("name", Value::Text(format!("Patient {}", i % PATIENTS)), vec![Label::demographics()])
                .with_labeled("payer", Value::Text("Acme Health".into()), vec![Label::financial()])
                .with("code", Value::from(Coding::new("http://loinc.org", "4548-4", Some("HbA1c"))))
                .with("seq", Value::Integer(i as i64))
        })
        .collect()
}

fn patients() -> Vec<String> {
    (0..PATIENTS).map(|p| format!("MRN-{p}")).collect()
}

/// A physician who may also write the `financial` label (the default policy gives
/// it to billing only), so one document can carry all three label groups.
fn vault(dir: &std::path::Path, name: &str) -> Vault {
    let mut policy = chartvault::access::Policy::hospital_default();
    for g in &mut policy.grants {
        if g.roles.contains(&chartvault::access::Role::physician()) && !g.labels.contains(&Label::financial()) {
            g.labels.push(Label::financial());
        }
    }
    let o = VaultOptions { initial_policy: policy, ..opts() };
    Vault::create(&dir.join(name), VaultKey::Raw(&key()), o).unwrap()
}

/// The create entries of the trail as (patient, number of documents, labels).
fn creates(v: &Vault) -> Vec<(Option<String>, usize, Vec<Label>, Outcome)> {
    let po = v
        .session(Principal::new(
            "po",
            chartvault::access::Role::privacy_officer(),
            "h",
            chartvault::access::Purpose::Compliance,
        ))
        .unwrap();
    let mut out: Vec<_> = po
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.action == Action::Create)
        .map(|e| {
            let mut labels = e.labels.clone();
            labels.sort();
            (e.patient.clone(), e.documents.len(), labels, e.outcome)
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

#[test]
fn put_all_stages_what_put_stages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // 100 documents: above the threshold for preparing on several threads.
    let all = docs(100);
    let one_by_one = vault(dir.path(), "put.cv");
    let bulk = vault(dir.path(), "put_all.cv");
    let (s1, s2) = (one_by_one.session(physician(patients())).unwrap(), bulk.session(physician(patients())).unwrap());
    let mut b1 = s1.batch().unwrap();
    let ids1: Vec<DocumentId> = all.iter().map(|d| b1.put(d).unwrap()).collect();
    b1.commit().unwrap();
    let mut b2 = s2.batch().unwrap();
    let ids2 = b2.put_all(&all).unwrap();
    // A second call in the same batch appends after the first.
    let more = b2.put_all(&docs(3)).unwrap();
    b2.commit().unwrap();
    assert_eq!(ids2.len(), all.len());
    for (i, (a, b)) in ids1.iter().zip(&ids2).enumerate() {
        let (d1, d2) = (s1.get(a).unwrap(), s2.get(b).unwrap());
        assert_eq!(d2.get("seq"), Some(&Value::Integer(i as i64)), "ids come back in document order");
        assert_eq!((&d1.patient, &d1.kind, &d1.fields), (&d2.patient, &d2.kind, &d2.fields));
        assert!(d2.redacted.is_empty());
    }
    for (i, id) in more.iter().enumerate() {
        assert_eq!(s2.get(id).unwrap().get("seq"), Some(&Value::Integer(i as i64)));
    }
    for p in patients() {
        let (c1, c2) = (s1.chart(&p).unwrap(), s2.chart(&p).unwrap());
        assert_eq!(c1.len() + usize::from(more.iter().any(|id| s2.get(id).unwrap().patient == p)), c2.len());
    }
    // The same audit: one create entry per patient for the first batch, listing every
    // document and label (the bulk vault's second call adds to the same entries).
    let (a1, a2) = (creates(&one_by_one), creates(&bulk));
    assert_eq!(a1.len(), PATIENTS);
    assert_eq!(
        a1.iter().map(|e| (&e.0, &e.2, e.3)).collect::<Vec<_>>(),
        a2.iter().map(|e| (&e.0, &e.2, e.3)).collect::<Vec<_>>()
    );
    assert_eq!(a2.iter().map(|e| e.1).sum::<usize>(), 103);
    drop((s1, s2));
    one_by_one.close().unwrap();
    bulk.close().unwrap();
}

#[test]
fn a_refused_document_stages_none_of_them_and_a_denial_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), "v.cv");
    let s = v.session(physician(patients())).unwrap();

    // A validation error at position 40 (an invalid field name): nothing is staged.
    let mut bad = docs(60);
    bad[40].fields.insert(String::new(), Field::from(Value::Integer(1)));
    let mut b = s.batch().unwrap();
    let err = b.put_all(&bad).unwrap_err();
    assert!(matches!(err, Error::InvalidDocument(_) | Error::InvalidArgument(_)), "{err:?}");
    b.commit().unwrap();
    assert!(s.chart("MRN-0").unwrap().is_empty());

    // A document for a patient outside the care team at position 30: denied, audited,
    // nothing staged.
    let mut denied = docs(50);
    denied[30].patient = "MRN-STRANGER".into();
    let mut b = s.batch().unwrap();
    let err = b.put_all(&denied).unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err:?}");
    b.commit().unwrap();
    assert!(s.chart("MRN-1").unwrap().is_empty());
    let audit = creates(&v);
    assert_eq!(
        audit.iter().filter(|e| e.3 == Outcome::Denied).map(|e| e.0.clone()).collect::<Vec<_>>(),
        vec![Some("MRN-STRANGER".to_string())]
    );
    assert!(audit.iter().all(|e| e.3 == Outcome::Denied), "no create succeeded: {audit:?}");

    // The same documents, all valid and allowed, go in.
    let mut b = s.batch().unwrap();
    assert_eq!(b.put_all(&docs(50)).unwrap().len(), 50);
    b.commit().unwrap();
    assert_eq!(s.chart("MRN-1").unwrap().len(), 50 / PATIENTS + usize::from(50 % PATIENTS > 1));
    drop(s);
    v.close().unwrap();
}

#[test]
fn put_all_of_nothing_and_of_a_few_documents() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), "v.cv");
    let s = v.session(physician(patients())).unwrap();
    let mut b = s.batch().unwrap();
    assert!(b.put_all(&[]).unwrap().is_empty());
    // Below the threshold: prepared on the calling thread.
    let ids = b.put_all(&docs(3)).unwrap();
    b.commit().unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(s.get(&ids[1]).unwrap().get("seq"), Some(&Value::Integer(1)));
    drop(s);
    v.close().unwrap();
}
