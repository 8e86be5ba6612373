use chartvault::access::{Principal, Purpose, Role};
use chartvault::*;

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1"])).unwrap();
    let doc = NewDocument::new("P1", "ClinicalNote").unwrap()
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
