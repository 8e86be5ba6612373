//! Erasing a patient destroys their key: every record of that patient becomes
//! unreadable (also after reopen, from a checkpoint or a full scan), other patients are
//! untouched, the erasure is audited, and only a role with the erase grant may do it.

use chartvault::access::{Principal, Purpose, Role};
use chartvault::{Coding, Error, NewDocument, SecretKey, Value, Vault, VaultKey, VaultOptions};

fn dr() -> Principal {
    Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P1", "P2"])
}

#[test]
fn erased_patient_is_unreadable_everywhere_and_others_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let s = v.session(dr()).unwrap();
    let mut ids = Vec::new();
    for p in ["P1", "P2"] {
        for i in 0..3 {
            ids.push((
                p,
                s.put(
                    &NewDocument::new(p, "Observation")
                        .unwrap()
                        .with("code", Value::from(Coding::new("loinc", "4548-4", None)))
                        .with("value", Value::Integer(i)),
                )
                .unwrap(),
            ));
        }
    }
    v.checkpoint().unwrap();
    // Only the privacy officer's erase grant allows it.
    assert!(matches!(s.erase_patient("P1", "patient request, right to erasure"), Err(Error::Denied(_))));
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    assert!(po.erase_patient("P1", "x").is_err(), "a reason is required");
    assert_eq!(po.erase_patient("P1", "patient request, right to erasure").unwrap(), 3);
    for (p, id) in &ids {
        let r = s.get(id);
        if *p == "P1" {
            assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
        } else {
            assert!(r.is_ok());
        }
    }
    assert_eq!(s.query_str("code = loinc:4548-4").unwrap().total, 3);
    let audit = po.audit_entries().unwrap();
    assert!(audit.iter().any(|e| e.action == chartvault::audit::Action::Erase && e.patient.as_deref() == Some("P1")));
    drop((s, po));
    v.close().unwrap();

    // Reopen from the checkpoint (written before the erasure) and from a full scan.
    for use_checkpoint in [true, false] {
        let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
        if !use_checkpoint {
            v.store().set_checkpoint_pointer(0).unwrap();
            drop(v);
            continue;
        }
        let s = v.session(dr()).unwrap();
        for (p, id) in &ids {
            assert_eq!(s.get(id).is_ok(), *p == "P2", "{p} {id}");
        }
        assert_eq!(s.query_str("code = loinc:4548-4").unwrap().total, 3);
        assert!(s.chart("P1").unwrap().is_empty());
        let rep = v.verify().unwrap();
        assert!(rep.is_clean(), "{rep:?}");
        assert_eq!(rep.erased_records, 3);
        drop(s);
        v.close().unwrap();
    }
    let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    assert!(v.open_report().checkpoint.is_none());
    let s = v.session(dr()).unwrap();
    assert_eq!(s.query_str("code = loinc:4548-4").unwrap().total, 3);
    // The erased record's bytes are still in the file but can no longer be opened.
    let (_, p1_doc) = ids[0];
    assert!(s.get(&p1_doc).is_err());
}

#[test]
fn amendment_is_a_new_audited_version_and_needs_the_amend_grant() {
    let dir = tempfile::tempdir().unwrap();
    let v =
        Vault::create(&dir.path().join("a.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default()).unwrap();
    let s = v.session(dr()).unwrap();
    let id = s
        .put(
            &NewDocument::new("P1", "Condition")
                .unwrap()
                .with("code", Value::from(Coding::new("icd10cm", "E11.9", None))),
        )
        .unwrap();
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("code".to_string(), Value::from(Coding::new("icd10cm", "E10.9", None)).into());
    assert!(s.amend(&id, fields.clone(), "").is_err(), "a reason is required");
    let billing = v.session(Principal::new("b", Role::billing(), "h", Purpose::Payment)).unwrap();
    assert!(matches!(billing.amend(&id, fields.clone(), "patient request 2024-05"), Err(Error::Denied(_))));
    assert_eq!(s.amend(&id, fields, "patient request 2024-05: type 1, not type 2").unwrap(), 2);
    let h = s.history(&id).unwrap();
    assert_eq!(h.len(), 2);
    assert!(matches!(h[0].get("code"), Some(Value::Code(c)) if c.code == "E11.9"));
    assert!(matches!(h[1].get("code"), Some(Value::Code(c)) if c.code == "E10.9"));
    let po = v.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    let trail = po.audit_entries().unwrap();
    assert!(trail.iter().any(|e| e.action == chartvault::audit::Action::Amend
        && e.outcome == chartvault::audit::Outcome::Success
        && e.detail.contains("type 1")));
    assert!(
        trail
            .iter()
            .any(|e| e.action == chartvault::audit::Action::Amend && e.outcome == chartvault::audit::Outcome::Denied)
    );
}
