//! Property: patient-level rules and relationships only ever take access away (or, for
//! break-glass, open it narrowly and audibly): consent restrictions by role,
//! organization and purpose; VIP status; the self-pay restriction; 42 CFR Part 2
//! consents with expiry; the care-team relationship; break-glass scope, flagging and
//! expiry; and automatic logoff after the policy's idle time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chartvault::access::{ConsentRestriction, Part2Consent, PatientRules, Principal, Purpose, Role};
use chartvault::audit::{Action, Outcome};
use chartvault::*;

const ORG: &str = "general-hospital";

struct Fx {
    _dir: tempfile::TempDir,
    v: Vault,
    po: Session,
}

fn vault() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(&dir.path().join("rules.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default())
        .unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), ORG, Purpose::Compliance)).unwrap();
    Fx { _dir: dir, v, po }
}

fn physician(user: &str, org: &str, care: &[&str]) -> Principal {
    Principal::new(user, Role::physician(), org, Purpose::Treat).with_care_team(care.iter().copied())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// An Observation for `patient` with a plain field `code` and a field `extra` that
/// carries `label`.
fn obs(patient: &str, label: Label, secret: &str) -> NewDocument {
    NewDocument::new(patient, "Observation").unwrap().with("code", text("lab")).with_labeled(
        "extra",
        text(secret),
        vec![label],
    )
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn is_denied<T: std::fmt::Debug>(r: Result<T>) -> bool {
    match r {
        Err(Error::Denied(_)) => true,
        other => panic!("expected Error::Denied, got {other:?}"),
    }
}

#[test]
fn consent_restriction_by_role_organization_and_purpose() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    let id = dr.put(&obs("P1", Label::mental_health(), "mh detail")).unwrap();
    let nurse =
        fx.v.session(Principal::new("nurse", Role::nurse(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    let partner = fx.v.session(physician("dr.partner", "partner-clinic", &["P1"])).unwrap();
    let researcher = fx.v.session(Principal::new("res", Role::researcher(), ORG, Purpose::Research)).unwrap();
    // Without restrictions: everyone sees what the policy grants.
    assert_eq!(nurse.get(&id).unwrap().get("extra"), Some(&text("mh detail")));
    assert_eq!(partner.get(&id).unwrap().get("extra"), Some(&text("mh detail")));
    assert_eq!(researcher.get(&id).unwrap().get("code"), Some(&text("lab")));

    fx.po
        .set_patient_rules(PatientRules {
            patient: "P1".into(),
            restrictions: vec![
                // To a role: no mental-health content for nurses.
                ConsentRestriction {
                    labels: vec![Label::mental_health()],
                    roles: vec![Role::nurse()],
                    organizations: vec![],
                    purposes: vec![],
                },
                // To an organization: nothing of this record for the partner clinic.
                ConsentRestriction {
                    labels: vec![Label::normal(), Label::mental_health()],
                    roles: vec![],
                    organizations: vec!["partner-clinic".into()],
                    purposes: vec![],
                },
                // To a purpose: no use for research.
                ConsentRestriction {
                    labels: vec![Label::normal()],
                    roles: vec![],
                    organizations: vec![],
                    purposes: vec![Purpose::Research],
                },
            ],
            ..PatientRules::default()
        })
        .unwrap();

    // Role restriction: the nurse still sees `code`, not the mental-health field.
    let d = nurse.get(&id).unwrap();
    assert_eq!(d.get("code"), Some(&text("lab")));
    assert!(d.get("extra").is_none() && d.redacted.contains_key("extra"), "{d:?}");
    // ... and may not write mental-health content for this patient.
    assert!(is_denied(nurse.put(&obs("P1", Label::mental_health(), "nurse mh"))));
    // Organization restriction: the partner physician sees no field at all.
    let d = partner.get(&id).unwrap();
    assert!(d.fields.is_empty(), "{d:?}");
    assert_eq!(d.redacted.keys().collect::<Vec<_>>(), ["code", "extra"]);
    // Purpose restriction: research gets nothing.
    let d = researcher.get(&id).unwrap();
    assert!(d.get("code").is_none() && d.redacted.contains_key("code"), "{d:?}");
    assert_eq!(researcher.query_str("code = \"lab\"").unwrap().total, 0);
    // Unrestricted principals are unaffected.
    let d = dr.get(&id).unwrap();
    assert_eq!((d.get("code"), d.get("extra")), (Some(&text("lab")), Some(&text("mh detail"))));
    // Another patient is unaffected.
    let dr2 = fx.v.session(physician("dr2", ORG, &["P2"])).unwrap();
    let id2 = dr2.put(&obs("P2", Label::mental_health(), "other")).unwrap();
    let nurse2 =
        fx.v.session(Principal::new("nurse2", Role::nurse(), ORG, Purpose::Treat).with_care_team(["P2"])).unwrap();
    assert_eq!(nurse2.get(&id2).unwrap().get("extra"), Some(&text("other")));
}

#[test]
fn vip_needs_care_relationship_or_break_glass() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    let id = dr.put(&obs("P1", Label::normal(), "n")).unwrap();
    let coder = fx.v.session(Principal::new("coder", Role::him_coder(), ORG, Purpose::Operations)).unwrap();
    assert!(coder.get(&id).is_ok(), "before VIP, the coder reads normal content");

    fx.po.set_patient_rules(PatientRules { patient: "P1".into(), vip: true, ..PatientRules::default() }).unwrap();

    // No care relationship: denied, even for a role whose grant needs none.
    assert!(is_denied(coder.get(&id)));
    assert_eq!(coder.query_str("patient = \"P1\"").unwrap().total, 0);
    let stranger = fx.v.session(physician("dr.stranger", ORG, &[])).unwrap();
    assert!(is_denied(stranger.get(&id)));
    // With the care relationship: allowed.
    assert_eq!(dr.get(&id).unwrap().get("code"), Some(&text("lab")));
    // With break-glass: allowed, and flagged.
    let er = fx.v.session(physician("dr.er", ORG, &[])).unwrap();
    assert!(is_denied(er.get(&id)));
    er.break_glass("P1", "unresponsive on arrival").unwrap();
    assert_eq!(er.get(&id).unwrap().get("code"), Some(&text("lab")));
    // The patient themself: allowed.
    let me = fx.v.session(Principal::new("p1", Role::patient(), "", Purpose::PatientRequest).as_patient("P1")).unwrap();
    assert!(me.get(&id).is_ok());

    let entries = fx.po.audit_entries().unwrap();
    let er_reads: Vec<_> = entries.iter().filter(|e| e.user == "dr.er" && e.action == Action::Read).collect();
    assert_eq!(
        er_reads.iter().map(|e| (e.outcome, e.break_glass)).collect::<Vec<_>>(),
        [(Outcome::Denied, false), (Outcome::Success, true)]
    );
}

#[test]
fn self_pay_documents_withheld_from_payment_only() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    let paid = dr.put(&obs("P1", Label::normal(), "paid out of pocket")).unwrap();
    let billed = dr.put(&obs("P1", Label::normal(), "billed to plan")).unwrap();
    fx.po
        .set_patient_rules(PatientRules {
            patient: "P1".into(),
            self_pay: BTreeSet::from([paid]),
            ..PatientRules::default()
        })
        .unwrap();

    let billing = fx.v.session(Principal::new("bill", Role::billing(), ORG, Purpose::Payment)).unwrap();
    assert!(is_denied(billing.get(&paid)));
    assert_eq!(billing.get(&billed).unwrap().get("extra"), Some(&text("billed to plan")));
    let r = billing.query_str("patient = \"P1\"").unwrap();
    assert_eq!((r.total, r.documents.iter().map(|d| d.id).collect::<Vec<_>>()), (1, vec![billed]));
    // The HIM coder working on payment is held to it too; for operations it is not.
    let coder_pay = fx.v.session(Principal::new("coder", Role::him_coder(), ORG, Purpose::Payment)).unwrap();
    assert!(is_denied(coder_pay.get(&paid)));
    let coder_ops = fx.v.session(Principal::new("coder", Role::him_coder(), ORG, Purpose::Operations)).unwrap();
    assert!(coder_ops.get(&paid).is_ok());
    // Treatment is not restricted.
    assert_eq!(dr.get(&paid).unwrap().get("extra"), Some(&text("paid out of pocket")));

    // A chart withholds exactly the self-pay documents too: interleaved with others,
    // and enough of them for the chart to be read on several threads.
    let more: Vec<DocumentId> =
        (0..20).map(|i| dr.put(&obs("P1", Label::normal(), &format!("visit {i}"))).unwrap()).collect();
    let withheld: BTreeSet<DocumentId> = more.iter().step_by(2).copied().chain([paid]).collect();
    fx.po
        .set_patient_rules(PatientRules { patient: "P1".into(), self_pay: withheld, ..PatientRules::default() })
        .unwrap();
    let pay = fx.v.session(Principal::new("bill", Role::billing(), ORG, Purpose::Payment)).unwrap();
    let charted: BTreeSet<DocumentId> = pay.chart("P1").unwrap().iter().map(|d| d.id).collect();
    let expected: BTreeSet<DocumentId> = more.iter().skip(1).step_by(2).copied().chain([billed]).collect();
    assert_eq!(charted, expected);
    let all: BTreeSet<DocumentId> = dr.chart("P1").unwrap().iter().map(|d| d.id).collect();
    assert_eq!(all.len(), 22, "treatment sees every document");
}

#[test]
fn part2_substance_use_needs_matching_unexpired_consent() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    let sud = |s: &str| obs("P1", Label::substance_use(), s);
    let set = |consents: Vec<Part2Consent>| {
        fx.po
            .set_patient_rules(PatientRules {
                patient: "P1".into(),
                part2_consents: consents,
                ..PatientRules::default()
            })
            .unwrap();
    };
    let reads_sud = |s: &Session, id: &DocumentId| -> bool {
        let d = s.get(id).unwrap();
        assert_eq!(d.get("code"), Some(&text("lab")), "the rest of the document stays readable");
        match d.get("extra") {
            Some(v) => {
                assert_eq!(v, &text("opioid use disorder"));
                true
            }
            None => {
                assert!(d.redacted.contains_key("extra"));
                false
            }
        }
    };

    let update = |s: &Session, id: &DocumentId| {
        s.update(
            id,
            BTreeMap::from([
                ("code".to_string(), Field::from(text("lab"))),
                (
                    "extra".to_string(),
                    Field { value: text("opioid use disorder"), labels: vec![Label::substance_use()] },
                ),
            ]),
        )
    };
    // Part 2 restricts use and disclosure; recording a record is neither (pdp.rs), so
    // the treating physician may write substance-use content without consent ...
    let id = dr.put(&sud("opioid use disorder")).unwrap();
    // ... but without consent may not read it back, nor update it (which needs reading).
    assert!(!reads_sud(&dr, &id));
    assert!(is_denied(update(&dr, &id)));
    // Consent to this organization for treatment: allowed.
    set(vec![Part2Consent { organization: ORG.into(), purposes: vec![Purpose::Treat], expires: Some(now_s() + 3600) }]);
    assert!(reads_sud(&dr, &id));
    update(&dr, &id).unwrap();
    // Another organization is not covered by it ...
    let other_org = fx.v.session(physician("dr.other", "other-hospital", &["P1"])).unwrap();
    assert!(!reads_sud(&other_org, &id));
    // ... nor another purpose (a physician acting for operations has no grant at all).
    set(vec![Part2Consent { organization: ORG.into(), purposes: vec![Purpose::Payment], expires: None }]);
    assert!(!reads_sud(&dr, &id));
    // "*" covers every organization.
    set(vec![Part2Consent { organization: "*".into(), purposes: vec![Purpose::Treat], expires: None }]);
    assert!(reads_sud(&other_org, &id));
    // Withdrawn consent: denied again.
    set(vec![]);
    assert!(!reads_sud(&dr, &id));
    assert!(is_denied(update(&dr, &id)));
    // Consent past its expiry: denied.
    set(vec![Part2Consent { organization: ORG.into(), purposes: vec![Purpose::Treat], expires: Some(now_s() - 1) }]);
    assert!(!reads_sud(&dr, &id));
    assert!(is_denied(update(&dr, &id)));
    // The patient's own access needs no consent.
    let me = fx.v.session(Principal::new("p1", Role::patient(), "", Purpose::PatientRequest).as_patient("P1")).unwrap();
    assert!(reads_sud(&me, &id));
}

#[test]
fn care_team_relationship_required() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    let id = dr.put(&obs("P1", Label::normal(), "n")).unwrap();
    let other = fx.v.session(physician("dr.other", ORG, &["P2"])).unwrap();
    assert!(is_denied(other.get(&id)));
    assert!(is_denied(other.put(&obs("P1", Label::normal(), "n"))));
    assert!(is_denied(other.update(&id, Default::default())));
    assert_eq!(other.query_str("patient = \"P1\"").unwrap().total, 0);
    assert!(other.chart("P1").unwrap().is_empty());
    // Same user, now with the relationship.
    let same = fx.v.session(physician("dr.other", ORG, &["P1", "P2"])).unwrap();
    assert_eq!(same.get(&id).unwrap().get("extra"), Some(&text("n")));
    assert_eq!(same.query_str("patient = \"P1\"").unwrap().total, 1);
    let nurse_no = fx.v.session(Principal::new("n", Role::nurse(), ORG, Purpose::Treat)).unwrap();
    assert!(is_denied(nurse_no.get(&id)));
}

#[test]
fn break_glass_is_scoped_flagged_and_expires() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1", "P2"])).unwrap();
    let p1 = dr.put(&obs("P1", Label::hiv_sti(), "hiv status")).unwrap();
    let p1_psy = dr.put(&obs("P1", Label::psychotherapy(), "session notes")).unwrap();
    let p2 = dr.put(&obs("P2", Label::normal(), "n")).unwrap();

    let er = fx.v.session(physician("dr.er", ORG, &[])).unwrap();
    assert!(is_denied(er.get(&p1)), "no relationship, no break-glass");
    assert!(matches!(er.break_glass("P1", ""), Err(Error::InvalidArgument(_))), "a reason is required");
    let g = er.break_glass("P1", "cardiac arrest, no history available").unwrap();
    assert_eq!(g.patient, "P1");
    assert_eq!(g.expires_us - g.started_us, 3600 * 1_000_000, "policy break_glass_secs");

    // Access to that patient only.
    assert_eq!(er.get(&p1).unwrap().get("extra"), Some(&text("hiv status")));
    assert_eq!(er.chart("P1").unwrap().len(), 2);
    let psy = er.get(&p1_psy).unwrap();
    assert!(
        psy.get("extra").is_none() && psy.redacted.contains_key("extra"),
        "psychotherapy stays closed under break-glass"
    );
    let id = er.put(&obs("P1", Label::normal(), "er note")).unwrap();
    assert!(is_denied(er.get(&p2)), "break-glass is scoped to one patient");
    // A role without an emergency grant cannot break the glass.
    let billing = fx.v.session(Principal::new("bill", Role::billing(), ORG, Purpose::Payment)).unwrap();
    assert!(is_denied(billing.break_glass("P1", "want to see it")));

    // Expiry.
    er.backdate_break_glass(Duration::from_secs(3601));
    assert!(is_denied(er.get(&p1)), "break-glass expired");
    assert!(is_denied(er.get(&id)));
    assert_eq!(er.query_str("patient = \"P1\"").unwrap().total, 0);

    // Every access to P1 under the grant is flagged in the audit trail; the denials
    // are not.
    let entries = fx.po.audit_entries().unwrap();
    let er_p1: Vec<_> = entries
        .iter()
        .filter(|e| e.user == "dr.er" && e.patient.as_deref() == Some("P1"))
        .map(|e| (e.action, e.outcome, e.break_glass))
        .collect();
    assert_eq!(
        er_p1,
        [
            (Action::Read, Outcome::Denied, false),
            (Action::BreakGlass, Outcome::Success, true),
            (Action::Read, Outcome::Success, true),   // get
            (Action::Read, Outcome::Success, true),   // chart
            (Action::Read, Outcome::Success, true),   // get of the psychotherapy-labelled doc
            (Action::Create, Outcome::Success, true), // put
            (Action::Read, Outcome::Denied, false),   // after expiry
            (Action::Read, Outcome::Denied, false),
            (Action::Query, Outcome::Success, false),
        ]
    );
    let bg = entries.iter().find(|e| e.action == Action::BreakGlass && e.outcome == Outcome::Success).unwrap();
    assert_eq!(bg.detail, "cardiac arrest, no history available");
    assert!(entries.iter().any(|e| e.user == "bill" && e.action == Action::BreakGlass && e.outcome == Outcome::Denied));
    assert!(!entries.iter().any(|e| e.user == "dr.er" && e.patient.as_deref() == Some("P2") && e.break_glass));
}

#[test]
fn idle_session_expires_and_is_audited() {
    let fx = vault();
    let dr = fx.v.session(physician("dr.idle", ORG, &["P1"])).unwrap();
    let id = dr.put(&obs("P1", Label::normal(), "n")).unwrap();
    dr.backdate_last_use(Duration::from_secs(600));
    assert!(dr.get(&id).is_ok(), "600 s idle is within the default 900 s");
    dr.backdate_last_use(Duration::from_secs(901));
    assert!(matches!(dr.get(&id), Err(Error::SessionExpired { idle_secs: 900 })));
    // Once expired, it stays expired for every operation.
    assert!(matches!(dr.put(&obs("P1", Label::normal(), "n")), Err(Error::SessionExpired { .. })));
    assert!(matches!(dr.query_str("patient = \"P1\""), Err(Error::SessionExpired { .. })));
    assert!(matches!(dr.break_glass("P1", "still here"), Err(Error::SessionExpired { .. })));
    // A fresh session works.
    let again = fx.v.session(physician("dr.idle", ORG, &["P1"])).unwrap();
    assert!(again.get(&id).is_ok());

    let entries = fx.po.audit_entries().unwrap();
    let expired: Vec<_> = entries.iter().filter(|e| e.action == Action::SessionExpired).collect();
    assert_eq!(expired.len(), 1, "exactly one session-expired entry: {expired:?}");
    assert_eq!((expired[0].user.as_str(), expired[0].action.name()), ("dr.idle", "session-expired"));
    // Nothing was read or written by the expired session.
    let reads = entries.iter().filter(|e| e.user == "dr.idle" && e.action == Action::Read).count();
    assert_eq!(reads, 2, "one read before expiry, one by the fresh session");
}

/// Queries are accesses too: a query run under break-glass must be flagged like a read.
///
/// KNOWN BUG (src/query/exec.rs, not ours to edit): `Session::query` builds its audit
/// entry without `.break_glass(..)`, so this test fails until that is fixed; the
/// break-glass report then misses queries made under emergency access.
#[test]
fn query_under_break_glass_is_flagged() {
    let fx = vault();
    let dr = fx.v.session(physician("dr", ORG, &["P1"])).unwrap();
    dr.put(&obs("P1", Label::normal(), "n")).unwrap();
    let er = fx.v.session(physician("dr.er", ORG, &[])).unwrap();
    assert_eq!(er.query_str("patient = \"P1\"").unwrap().total, 0, "no relationship yet");
    er.break_glass("P1", "cardiac arrest, no history available").unwrap();
    let r = er.query_str("patient = \"P1\"").unwrap();
    assert_eq!(r.total, 1, "break-glass opens the query");
    let entries = fx.po.audit_entries().unwrap();
    let queries: Vec<_> = entries
        .iter()
        .filter(|e| e.user == "dr.er" && e.action == Action::Query)
        .map(|e| (e.documents.len(), e.break_glass))
        .collect();
    assert_eq!(queries, [(0, false), (1, true)], "the query that relied on break-glass must be flagged");
    let report = fx.po.break_glass_report().unwrap();
    assert!(report.accesses.iter().any(|a| a.action == "query"), "{report:?}");
}
