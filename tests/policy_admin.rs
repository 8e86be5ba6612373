//! Property: the policy and the key slots are administered only by the security
//! administrator, every attempt is audited, policy versions increase and survive a
//! reopen (and take effect), and a mistyped policy file is refused with a clear error.

use std::time::Duration;

use chartvault::access::{Policy, Principal, Purpose, Role};
use chartvault::audit::{Action, Outcome};
use chartvault::*;

const ORG: &str = "general-hospital";

fn admin() -> Principal {
    Principal::new("sec.admin", Role::security_admin(), ORG, Purpose::SystemAdmin)
}
fn po() -> Principal {
    Principal::new("po", Role::privacy_officer(), ORG, Purpose::Compliance)
}
fn researcher() -> Principal {
    Principal::new("res", Role::researcher(), ORG, Purpose::Research)
}

/// Everyone but the security administrator acting for system administration.
fn non_admins() -> Vec<Principal> {
    vec![
        Principal::new("dr", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"]),
        Principal::new("nurse", Role::nurse(), ORG, Purpose::Treat).with_care_team(["P1"]),
        Principal::new("coder", Role::him_coder(), ORG, Purpose::Operations),
        Principal::new("bill", Role::billing(), ORG, Purpose::Payment),
        researcher(),
        Principal::new("p1", Role::patient(), ORG, Purpose::PatientRequest).as_patient("P1"),
        po(),
        Principal::new("sec.treat", Role::security_admin(), ORG, Purpose::Treat),
    ]
}

/// The default policy without the researcher's grant, with a shorter idle time.
fn tightened(name: &str, idle: u64) -> Policy {
    let mut p = Policy::hospital_default();
    p.name = name.into();
    p.session_idle_secs = idle;
    p.grants.retain(|g| !g.roles.contains(&Role::researcher()));
    p
}

#[test]
fn only_security_admin_sets_policy_versions_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let dr = v.session(Principal::new("dr", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    let id = dr.put(&NewDocument::new("P1", "Observation").unwrap().with("value", Value::Integer(7))).unwrap();
    let admin_s = v.session(admin()).unwrap();
    let p1 = admin_s.policy().unwrap();
    assert_eq!((p1.name.as_str(), p1.version), ("hospital-default", 1));
    assert!(v.session(researcher()).unwrap().get(&id).is_ok(), "researchers read normal content by default");

    // Everyone else is refused, and each refusal is audited.
    for p in non_admins() {
        let user = p.user.clone();
        let s = v.session(p).unwrap();
        assert!(matches!(s.set_policy(tightened("nope", 300)), Err(Error::Denied(_))), "{user}");
    }
    assert_eq!(admin_s.policy().unwrap().version, 1, "refused changes leave the policy alone");
    // An invalid policy is refused even for the administrator.
    let mut bad = tightened("bad", 300);
    bad.session_idle_secs = 0;
    assert!(matches!(admin_s.set_policy(bad), Err(Error::InvalidPolicy(_))));

    // The administrator: versions increase by one.
    assert_eq!(admin_s.set_policy(tightened("tightened", 300)).unwrap(), 2);
    assert_eq!(admin_s.set_policy(tightened("tightened-again", 300)).unwrap(), 3);
    let now = admin_s.policy().unwrap();
    assert_eq!((now.name.as_str(), now.version, now.session_idle_secs), ("tightened-again", 3, 300));
    // It takes effect at once: the researcher grant is gone, the idle limit is 300 s.
    assert!(matches!(v.session(researcher()).unwrap().get(&id), Err(Error::Denied(_))));
    let dr2 = v.session(Principal::new("dr", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    dr2.backdate_last_use(Duration::from_secs(301));
    assert!(matches!(dr2.get(&id), Err(Error::SessionExpired { idle_secs: 300 })));

    let audit = v.session(po()).unwrap().audit_entries().unwrap();
    let changes: Vec<_> = audit
        .iter()
        .filter(|e| e.action == Action::PolicyChange)
        .map(|e| (e.user.as_str(), e.outcome, e.detail.as_str()))
        .collect();
    let denied: Vec<&str> = changes.iter().filter(|c| c.1 == Outcome::Denied).map(|c| c.0).collect();
    assert_eq!(denied, ["dr", "nurse", "coder", "bill", "res", "p1", "po", "sec.treat"]);
    let ok: Vec<_> = changes.iter().filter(|c| c.1 == Outcome::Success).map(|c| (c.0, c.2)).collect();
    assert_eq!(ok, [("sec.admin", "policy tightened version 2"), ("sec.admin", "policy tightened-again version 3")]);
    // The vault's own creation recorded version 1.
    assert!(audit.iter().any(|e| e.action == Action::VaultCreate && e.detail == "policy hospital-default version 1"));

    // Reopen: the newest version is in force, and numbering continues from it.
    drop((dr, dr2, admin_s));
    v.close().unwrap();
    let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let admin_s = v.session(admin()).unwrap();
    let p = admin_s.policy().unwrap();
    assert_eq!((p.name.as_str(), p.version, p.session_idle_secs), ("tightened-again", 3, 300));
    assert_eq!(p.grants, tightened("x", 300).grants);
    assert!(matches!(v.session(researcher()).unwrap().get(&id), Err(Error::Denied(_))));
    assert_eq!(admin_s.set_policy(Policy::hospital_default()).unwrap(), 4);
    assert!(v.session(researcher()).unwrap().get(&id).is_ok());
    // Also through a read-only handle.
    drop(admin_s);
    v.close().unwrap();
    let ro =
        Vault::open(&path, VaultKey::Raw(&key), VaultOptions { read_only: true, ..VaultOptions::default() }).unwrap();
    assert_eq!(ro.session(po()).unwrap().policy().unwrap().version, 4);
}

#[test]
fn mistyped_policy_json_is_refused_clearly() {
    let good = r#"{ "name": "clinic", "session_idle_secs": 600, "grants": [
        { "roles": ["physician"], "purposes": ["TREAT"], "operations": ["read", "query"],
          "labels": ["normal", "restricted"], "care_team": true } ] }"#;
    let p = Policy::from_json(good).unwrap();
    assert_eq!((p.name.as_str(), p.session_idle_secs, p.grants.len()), ("clinic", 600, 1));

    let cases = [
        // (typo, what the message must name)
        (good.replace("care_team", "care_taem"), "care_taem"),
        (good.replace("session_idle_secs", "sesion_idle_secs"), "sesion_idle_secs"),
        (good.replace("\"TREAT\"", "\"TRAET\""), "TRAET"),
        (good.replace("\"query\"", "\"qeury\""), "qeury"),
        (good.replace("\"restricted\"", "\"Restricted\""), "label"),
    ];
    for (json, needle) in cases {
        match Policy::from_json(&json) {
            Err(e @ Error::InvalidPolicy(_)) => {
                let msg = e.to_string();
                assert!(msg.starts_with("invalid policy: "), "{msg}");
                assert!(msg.contains(needle), "message should name {needle:?}: {msg}");
                assert!(msg.contains("line ") && msg.contains("column "), "message should say where: {msg}");
            }
            other => panic!("typo {needle:?} accepted or wrong error: {other:?}"),
        }
    }
    // Well-formed JSON that is not a usable policy.
    let e = Policy::from_json(
        r#"{"name":"x","grants":[{"roles":["physician"],"purposes":["TREAT"],"operations":["read"]}]}"#,
    )
    .unwrap_err();
    assert!(matches!(&e, Error::InvalidPolicy(m) if m.contains("grant 0") && m.contains("labels")), "{e}");
    assert!(matches!(Policy::from_json("{"), Err(Error::InvalidPolicy(_))));
}

#[test]
fn key_slots_administered_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slots.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let second = SecretKey::random();
    let ro = |k: VaultKey<'_>| {
        Vault::open(&path, k, VaultOptions { read_only: true, ..VaultOptions::default() }).map(|_| ())
    };

    // Not for anyone else.
    for p in non_admins() {
        let user = p.user.clone();
        let s = v.session(p).unwrap();
        assert!(
            matches!(s.add_key_slot(VaultKey::Raw(&second), KdfParams::INSECURE_FOR_TESTS), Err(Error::Denied(_))),
            "{user}"
        );
        assert!(matches!(s.remove_key_slot(0), Err(Error::Denied(_))), "{user}");
    }
    assert!(matches!(ro(VaultKey::Raw(&second)), Err(Error::WrongKey)));

    let admin_s = v.session(admin()).unwrap();
    let raw_slot = admin_s.add_key_slot(VaultKey::Raw(&second), KdfParams::INSECURE_FOR_TESTS).unwrap();
    let pass_slot = admin_s
        .add_key_slot(VaultKey::Passphrase(b"correct horse battery staple"), KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    assert_ne!(raw_slot, pass_slot);
    ro(VaultKey::Raw(&second)).unwrap();
    ro(VaultKey::Passphrase(b"correct horse battery staple")).unwrap();
    admin_s.remove_key_slot(raw_slot).unwrap();
    assert!(matches!(ro(VaultKey::Raw(&second)), Err(Error::WrongKey)));
    ro(VaultKey::Raw(&key)).unwrap();
    admin_s.remove_key_slot(pass_slot).unwrap();
    assert!(matches!(admin_s.remove_key_slot(pass_slot), Err(Error::KeySlot(_))));
    assert!(matches!(admin_s.remove_key_slot(0), Err(Error::KeySlot(_))), "the last slot stays");
    ro(VaultKey::Raw(&key)).unwrap();

    let audit = v.session(po()).unwrap().audit_entries().unwrap();
    let slot_entries: Vec<_> = audit
        .iter()
        .filter(|e| matches!(e.action, Action::KeySlotAdd | Action::KeySlotRemove))
        .map(|e| (e.user.clone(), e.action, e.outcome, e.detail.clone()))
        .collect();
    let denied = slot_entries.iter().filter(|e| e.2 == Outcome::Denied).count();
    assert_eq!(denied, 2 * non_admins().len());
    let ok: Vec<_> =
        slot_entries.iter().filter(|e| e.2 == Outcome::Success).map(|e| (e.0.as_str(), e.1, e.3.clone())).collect();
    assert_eq!(
        ok,
        [
            ("sec.admin", Action::KeySlotAdd, format!("slot {raw_slot}")),
            ("sec.admin", Action::KeySlotAdd, format!("slot {pass_slot}")),
            ("sec.admin", Action::KeySlotRemove, format!("slot {raw_slot}")),
            ("sec.admin", Action::KeySlotRemove, format!("slot {pass_slot}")),
        ]
    );
    // Key material never appears in the trail.
    let dbg = format!("{audit:?}");
    assert!(!dbg.contains("correct horse"));
}
