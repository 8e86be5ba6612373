use chartvault::access::{Principal, Purpose, Role};
use chartvault::*;

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1"])).unwrap();
    let doc = NewDocument::new("P1", "ClinicalNote")
        .unwrap()
        .with("text", Value::Text("patient is sad".into()))
        .with("date", Value::Date(Date::parse("2024-01-02").unwrap()));
    let id = dr.put(&doc).unwrap();
    let d = dr.get(&id).unwrap();
    assert_eq!(d.get("text"), Some(&Value::Text("patient is sad".into())));
    let coder = v.session(Principal::new("c", Role::him_coder(), "h", Purpose::Operations)).unwrap();
    let d2 = coder.get(&id).unwrap();
    assert!(d2.get("text").is_none());
    assert!(d2.redacted.contains_key("text"));
    assert!(d2.get("date").is_some());
    drop((dr, coder));
    v.close().unwrap();
    let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    let rep = po.audit_verify().unwrap();
    assert!(rep.is_intact(), "{rep:?}");
    let entries = po.audit_entries().unwrap();
    assert!(entries.len() >= 5, "{}", entries.len());
    assert!(v.verify().unwrap().is_clean());
}

#[test]
fn query_and_checkpoint_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let dr =
        v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1", "P2"])).unwrap();
    for (p, code, date) in
        [("P1", "4548-4", "2024-01-05"), ("P1", "2345-7", "2024-02-01"), ("P2", "4548-4", "2023-05-01")]
    {
        dr.put(
            &NewDocument::new(p, "Observation")
                .unwrap()
                .with("code", Value::from(Coding::new("loinc", code, None)))
                .with("effective", Value::Date(Date::parse(date).unwrap())),
        )
        .unwrap();
    }
    let r = dr.query_str("kind = Observation and code = loinc:4548-4 order by effective desc").unwrap();
    assert_eq!(r.total, 2);
    assert_eq!(r.documents[0].patient, "P1");
    let r = dr.query_str("patient = \"P1\" and effective >= 2024-01-01 limit 1").unwrap();
    assert_eq!((r.total, r.documents.len()), (2, 1));
    let c = r.next_cursor.clone().unwrap();
    let r2 = dr
        .query(
            &chartvault::query::QueryBuilder::new()
                .patient("P1")
                .cmp(
                    "effective",
                    chartvault::query::CmpOp::Ge,
                    chartvault::query::Literal::Date(Date::parse("2024-01-01").unwrap()),
                )
                .limit(1)
                .after(&c)
                .build(),
        )
        .unwrap();
    assert_eq!(r2.documents.len(), 1);
    assert_ne!(r2.documents[0].id, r.documents[0].id);
    assert!(r2.next_cursor.is_none());
    v.checkpoint().unwrap();
    dr.put(
        &NewDocument::new("P2", "Observation").unwrap().with("code", Value::from(Coding::new("loinc", "4548-4", None))),
    )
    .unwrap();
    drop(dr);
    v.close().unwrap();
    let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    assert!(v.open_report().checkpoint.is_some(), "{:?}", v.open_report());
    let dr =
        v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1", "P2"])).unwrap();
    assert_eq!(dr.query_str("code = loinc:4548-4").unwrap().total, 3);
    let nurse_other =
        v.session(Principal::new("n", Role::nurse(), "h", Purpose::Treat).with_care_team(["P2"])).unwrap();
    assert_eq!(nurse_other.query_str("code = loinc:4548-4").unwrap().total, 2);
}
