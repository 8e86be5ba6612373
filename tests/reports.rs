//! Property: the privacy officer's reports say exactly what happened. After a
//! scripted scenario (several users reading and writing two patients, an exempt and
//! an accountable disclosure, a denied access, a break-glass), the accounting of
//! disclosures, the access report of each patient and the break-glass report list
//! exactly the expected lines, and the FHIR export is a Bundle of AuditEvents.

use std::collections::BTreeMap;

use chartvault::access::{Principal, Purpose, Role};
use chartvault::*;

const ORG: &str = "general-hospital";

fn obs(patient: &str, v: i64) -> NewDocument {
    NewDocument::new(patient, "Observation")
        .unwrap()
        .with("code", Value::from(Coding::new("loinc", "4548-4", None)))
        .with("value", Value::Integer(v))
}

type Line = (String, String, String, String, usize, bool);

fn line(user: &str, action: &str, outcome: &str, purpose: &str, documents: usize, break_glass: bool) -> Line {
    (user.into(), action.into(), outcome.into(), purpose.into(), documents, break_glass)
}

#[test]
fn reports_match_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(&dir.path().join("reports.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default())
        .unwrap();
    let adams =
        v.session(Principal::new("dr.adams", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    let baker = v
        .session(Principal::new("nurse.baker", Role::nurse(), ORG, Purpose::Treat).with_care_team(["P1", "P2"]))
        .unwrap();
    let chen = v.session(Principal::new("coder.chen", Role::him_coder(), ORG, Purpose::Legal)).unwrap();
    let er = v.session(Principal::new("dr.er", Role::physician(), ORG, Purpose::Treat)).unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), ORG, Purpose::Compliance)).unwrap();

    // The script.
    let o1 = adams.put(&obs("P1", 1)).unwrap(); //                          P1 create
    let o2 = baker.put(&obs("P2", 2)).unwrap(); //                          P2 create
    baker.get(&o1).unwrap(); //                                             P1 read
    adams.update(&o1, BTreeMap::from([("value".to_string(), Field::from(Value::Integer(11)))])).unwrap(); // P1 update
    assert!(matches!(adams.get(&o2), Err(Error::Denied(_)))); //            P2 read denied
    adams // exempt: treatment                                              P1 disclose
        .record_disclosure(&DisclosureRequest {
            patient: "P1".into(),
            recipient: "St. Elsewhere Hospital, 5 Elm St".into(),
            description: "HbA1c results for continuing care".into(),
            documents: vec![o1],
        })
        .unwrap();
    chen // accountable: legal                                              P1 disclose
        .record_disclosure(&DisclosureRequest {
            patient: "P1".into(),
            recipient: "Superior Court of Example County, 1 Main St".into(),
            description: "lab results under subpoena 2024-17".into(),
            documents: vec![o1],
        })
        .unwrap();
    er.break_glass("P2", "unconscious in the ED, no history available").unwrap(); // P2 break-glass
    er.get(&o2).unwrap(); //                                                P2 read (break-glass)
    er.put(&obs("P2", 3)).unwrap(); //                                      P2 create (break-glass)
    assert_eq!(baker.query_str("patient = \"P2\"").unwrap().total, 2); //   P2 query

    // Accounting of disclosures.
    let acc = po.accounting_of_disclosures("P1").unwrap();
    assert_eq!(acc.patient, "P1");
    let lines = |ls: &[chartvault::audit::report::DisclosureLine]| {
        ls.iter()
            .map(|l| (l.recipient.clone(), l.description.clone(), l.purpose.clone(), l.documents, l.user.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(&acc.accountable),
        [(
            "Superior Court of Example County, 1 Main St".to_string(),
            "lab results under subpoena 2024-17".to_string(),
            "HLEGAL".to_string(),
            1,
            "coder.chen".to_string()
        )]
    );
    assert_eq!(
        lines(&acc.exempt),
        [(
            "St. Elsewhere Hospital, 5 Elm St".to_string(),
            "HbA1c results for continuing care".to_string(),
            "TREAT".to_string(),
            1,
            "dr.adams".to_string()
        )]
    );
    let t = |s: &str| DateTime::parse(s).unwrap().unix_micros();
    assert!(t(&acc.exempt[0].date) <= t(&acc.accountable[0].date), "ledger order");
    assert!(t(&acc.from) < t(&acc.accountable[0].date) && t(&acc.accountable[0].date) <= t(&acc.generated));
    let acc2 = po.accounting_of_disclosures("P2").unwrap();
    assert!(acc2.accountable.is_empty() && acc2.exempt.is_empty());

    // Access reports.
    let report = |p: &str| -> Vec<Line> {
        po.access_report(p)
            .unwrap()
            .accesses
            .iter()
            .map(|a| {
                (a.user.clone(), a.action.clone(), a.outcome.clone(), a.purpose.clone(), a.documents, a.break_glass)
            })
            .collect()
    };
    assert_eq!(
        report("P1"),
        [
            line("dr.adams", "create", "success", "TREAT", 1, false),
            line("nurse.baker", "read", "success", "TREAT", 1, false),
            line("dr.adams", "update", "success", "TREAT", 1, false),
            line("dr.adams", "disclose", "success", "TREAT", 1, false),
            line("coder.chen", "disclose", "success", "HLEGAL", 1, false),
        ]
    );
    assert_eq!(
        report("P2"),
        [
            line("nurse.baker", "create", "success", "TREAT", 1, false),
            line("dr.adams", "read", "denied", "TREAT", 1, false),
            line("dr.er", "break-glass", "success", "TREAT", 0, true),
            line("dr.er", "read", "success", "TREAT", 1, true),
            line("dr.er", "create", "success", "TREAT", 1, true),
            line("nurse.baker", "query", "success", "TREAT", 2, false),
        ]
    );
    let r = po.access_report("P1").unwrap();
    assert_eq!(r.patient, "P1");
    assert!(r.accesses.iter().all(|a| a.roles.len() == 1 && a.organization == ORG && !a.time.is_empty()));
    let t = |s: &str| DateTime::parse(s).unwrap().unix_micros();
    assert!(r.accesses.windows(2).all(|w| t(&w[0].time) <= t(&w[1].time)), "access report is in time order");

    // Break-glass report.
    let bg = po.break_glass_report().unwrap();
    assert_eq!(
        bg.requests
            .iter()
            .map(|r| (r.user.as_str(), r.patient.as_str(), r.reason.as_str(), r.outcome.as_str()))
            .collect::<Vec<_>>(),
        [("dr.er", "P2", "unconscious in the ED, no history available", "success")]
    );
    assert_eq!(
        bg.accesses
            .iter()
            .map(|a| (a.user.as_str(), a.action.as_str(), a.outcome.as_str(), a.documents))
            .collect::<Vec<_>>(),
        [("dr.er", "read", "success", 1), ("dr.er", "create", "success", 1)]
    );

    // FHIR export: a Bundle of AuditEvents with action, outcome and purpose.
    let n = po.audit_entries().unwrap().len();
    let fhir = po.audit_export_fhir().unwrap();
    assert_eq!(fhir["resourceType"], "Bundle");
    let entries = fhir["entry"].as_array().unwrap();
    assert_eq!(entries.len(), n + 1, "every entry, including this export's own audit-read");
    for e in entries {
        let r = &e["resource"];
        assert_eq!(r["resourceType"], "AuditEvent", "{r}");
        assert!(["C", "R", "U", "D", "E"].contains(&r["action"].as_str().unwrap()), "{r}");
        assert!(["0", "4", "8"].contains(&r["outcome"].as_str().unwrap()), "{r}");
        let pur = r["purposeOfEvent"].as_array().unwrap();
        assert!(!pur.is_empty() && pur.iter().all(|p| !p["coding"][0]["code"].as_str().unwrap().is_empty()), "{r}");
        assert!(!r["agent"][0]["who"]["identifier"]["value"].as_str().unwrap().is_empty(), "{r}");
    }
    let by_user_action = |user: &str, action: &str| {
        entries
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["agent"][0]["who"]["identifier"]["value"] == user && r["subtype"][0]["code"] == action)
            .unwrap_or_else(|| panic!("no {action} by {user}"))
            .clone()
    };
    let denied = by_user_action("dr.adams", "read");
    // dr.adams's first read-action entry is the denied one (his other P1 access was a create).
    assert_eq!((denied["action"].as_str(), denied["outcome"].as_str()), (Some("R"), Some("4")));
    let glass = by_user_action("dr.er", "read");
    let codes: Vec<&str> =
        glass["purposeOfEvent"].as_array().unwrap().iter().map(|p| p["coding"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["TREAT", "BTG"]);
    let disclose = by_user_action("coder.chen", "disclose");
    assert_eq!(disclose["purposeOfEvent"][0]["coding"][0]["code"], "HLEGAL");
    assert_eq!(disclose["outcome"], "0");
    let create = by_user_action("dr.adams", "create");
    assert_eq!(create["action"], "C");
}
