//! Property: the plaintext of a field a principal may not read never comes out: not in
//! the `Document` it gets back (Debug), not in that document's JSON, not in any error
//! of a denied read, write or query (Display and Debug), not in the audit trail
//! (entries and FHIR export), and not in any file of the vault directory. Values a
//! caller tried to write and was refused never reach the disk either.

use std::collections::{BTreeMap, BTreeSet};

use chartvault::access::{PatientRules, Principal, Purpose, Role};
use chartvault::model::json::document_to_json;
use chartvault::*;

const ORG: &str = "general-hospital";

// Unique canary values, one per protected field.
const NOTE_TEXT: &str = "CANARY-note-text-4f1c9a";
const PSY: &str = "CANARY-psychotherapy-77ab21";
const HIV: &str = "CANARY-hiv-5d2e88";
const SELF_PAY: &str = "CANARY-selfpay-c0de31";
// Values of writes that are refused.
const DENIED_CREATE: &str = "CANARY-denied-create-9e9e07";
const DENIED_UPDATE: &str = "CANARY-denied-update-1b1b55";
const DENIED_CREATE_2: &str = "CANARY-denied-create2-aa0f42";

const ALL: [&str; 7] = [NOTE_TEXT, PSY, HIV, SELF_PAY, DENIED_CREATE, DENIED_UPDATE, DENIED_CREATE_2];

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn assert_absent(haystack: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(!haystack.contains(n), "{what} leaks {n}: {haystack}");
    }
}

struct Views {
    /// (doc id, field name) -> the canary stored there.
    canary: BTreeMap<(DocumentId, String), &'static str>,
    /// Documents returned to principals, with a description.
    docs: Vec<(String, Document)>,
    /// Errors of denied operations.
    errors: Vec<(String, Error)>,
}

impl Views {
    fn doc(&mut self, who: &str, r: Result<Document>) {
        let d = r.unwrap_or_else(|e| panic!("{who}: {e}"));
        assert!(!d.redacted.is_empty(), "{who}: expected something redacted in {d:?}");
        self.docs.push((who.to_string(), d));
    }
    fn docs(&mut self, who: &str, r: Result<Vec<Document>>) {
        let ds = r.unwrap_or_else(|e| panic!("{who}: {e}"));
        assert!(!ds.is_empty(), "{who}: expected documents");
        for d in ds {
            self.docs.push((who.to_string(), d));
        }
    }
    fn denied<T: std::fmt::Debug>(&mut self, who: &str, r: Result<T>) {
        match r {
            Err(e @ Error::Denied(_)) => self.errors.push((who.to_string(), e)),
            other => panic!("{who}: expected Error::Denied, got {other:?}"),
        }
    }
}

#[test]
fn denied_plaintext_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leak.cv");
    let key = SecretKey::random();
    let v = Vault::create(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    let dr = v.session(Principal::new("dr", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    let note = dr
        .put(
            &NewDocument::new("P1", "ClinicalNote")
                .unwrap()
                .with("text", text(NOTE_TEXT))
                .with("date", Value::Date(Date::parse("2024-03-01").unwrap())),
        )
        .unwrap();
    let obs = dr
        .put(
            &NewDocument::new("P1", "Observation")
                .unwrap()
                .with("code", Value::from(Coding::new("loinc", "4548-4", None)))
                .with_labeled("psy", text(PSY), vec![Label::psychotherapy()])
                .with_labeled("hiv", text(HIV), vec![Label::hiv_sti()]),
        )
        .unwrap();
    let paid = dr
        .put(
            &NewDocument::new("P1", "Observation")
                .unwrap()
                .with("code", Value::from(Coding::new("loinc", "2345-7", None)))
                .with("value", text(SELF_PAY)),
        )
        .unwrap();
    // A second version of the note, so history has more than one version to leak.
    dr.update(
        &note,
        BTreeMap::from([
            ("text".to_string(), Field::from(text(NOTE_TEXT))),
            ("date".to_string(), Field::from(Value::Date(Date::parse("2024-03-02").unwrap()))),
        ]),
    )
    .unwrap();
    let po = v.session(Principal::new("po", Role::privacy_officer(), ORG, Purpose::Compliance)).unwrap();
    po.set_patient_rules(PatientRules {
        patient: "P1".into(),
        self_pay: BTreeSet::from([paid]),
        ..PatientRules::default()
    })
    .unwrap();

    // The needle search is meaningful: an entitled reader does see the canaries in
    // the Debug and JSON forms checked below.
    let full = dr.get(&obs).unwrap();
    let (dbg, json) = (format!("{full:?}"), document_to_json(&full).to_string());
    for c in [PSY, HIV] {
        assert!(dbg.contains(c) && json.contains(c), "entitled view lacks {c}");
    }

    let mut canary = BTreeMap::new();
    canary.insert((note, "text".to_string()), NOTE_TEXT);
    canary.insert((obs, "psy".to_string()), PSY);
    canary.insert((obs, "hiv".to_string()), HIV);
    canary.insert((paid, "value".to_string()), SELF_PAY);
    let mut views = Views { canary, docs: Vec::new(), errors: Vec::new() };

    // HIM coder (operations): normal content only.
    let coder = v.session(Principal::new("coder", Role::him_coder(), ORG, Purpose::Operations)).unwrap();
    views.doc("coder get note", coder.get(&note));
    views.doc("coder get obs", coder.get(&obs));
    views.doc("coder get note v1", coder.get_version(&note, 1));
    views.docs("coder history", coder.history(&note));
    views.docs("coder chart", coder.chart("P1"));
    views.docs("coder query", coder.query_str("patient = \"P1\"").map(|r| r.documents));
    views.denied("coder query on hidden field", coder.query_str("kind = ClinicalNote order by text"));
    views.denied(
        "coder update",
        coder.update(&note, BTreeMap::from([("text".to_string(), Field::from(text(DENIED_UPDATE)))])),
    );
    // Nurse: no psychotherapy content.
    let nurse = v.session(Principal::new("nurse", Role::nurse(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    views.doc("nurse get obs", nurse.get(&obs));
    views.denied(
        "nurse create psychotherapy",
        nurse.put(&NewDocument::new("P1", "Observation").unwrap().with_labeled(
            "psy",
            text(DENIED_CREATE),
            vec![Label::psychotherapy()],
        )),
    );
    views.denied(
        "nurse create psychotherapy note",
        nurse.put(&NewDocument::new("P1", "PsychotherapyNote").unwrap().with("text", text(DENIED_CREATE_2))),
    );
    views.denied(
        "nurse update obs",
        nurse.update(&obs, BTreeMap::from([("hiv".to_string(), Field::from(text(DENIED_UPDATE)))])),
    );
    // Billing: the self-pay document is withheld entirely; others are redacted.
    let billing = v.session(Principal::new("bill", Role::billing(), ORG, Purpose::Payment)).unwrap();
    views.denied("billing get self-pay", billing.get(&paid));
    views.denied("billing history self-pay", billing.history(&paid));
    views.doc("billing get obs", billing.get(&obs));
    views.docs("billing query", billing.query_str("patient = \"P1\"").map(|r| r.documents));
    // Researcher: de-identified, normal content only.
    let res = v.session(Principal::new("res", Role::researcher(), ORG, Purpose::Research)).unwrap();
    views.doc("researcher get obs", res.get(&obs));
    views.docs("researcher query", res.query_str("kind = Observation").map(|r| r.documents));
    // No relationship, no role, no purpose.
    let stranger = v.session(Principal::new("dr.x", Role::physician(), ORG, Purpose::Treat)).unwrap();
    views.denied("stranger get", stranger.get(&obs));
    views.denied(
        "stranger update",
        stranger.update(&obs, BTreeMap::from([("psy".to_string(), Field::from(text(DENIED_UPDATE)))])),
    );
    let admin = v.session(Principal::new("admin", Role::security_admin(), ORG, Purpose::SystemAdmin)).unwrap();
    views.denied("admin get", admin.get(&note));
    views.denied("admin query", admin.query_str("kind = ClinicalNote"));
    views.denied("po get", po.get(&paid));

    // 1-2. Returned documents: no redacted field's canary in Debug or JSON.
    let mut checked = 0;
    for (who, d) in &views.docs {
        let (dbg, json) = (format!("{d:?}"), document_to_json(d).to_string());
        for field in d.redacted.keys() {
            if let Some(c) = views.canary.get(&(d.id, field.clone())) {
                assert_absent(&dbg, &[c], &format!("{who}: Debug of {}", d.id));
                assert_absent(&json, &[c], &format!("{who}: JSON of {}", d.id));
                checked += 1;
            }
        }
        // Fields that were redacted are not in `fields`.
        assert!(d.redacted.keys().all(|f| !d.fields.contains_key(f)), "{who}: {d:?}");
    }
    assert!(checked >= 12, "only {checked} redacted canary fields were checked");
    // The coder's note never shows its text; the nurse's obs never shows psychotherapy.
    assert!(
        views
            .docs
            .iter()
            .filter(|(w, d)| w.starts_with("coder") && d.id == note)
            .all(|(_, d)| d.redacted.contains_key("text"))
    );
    assert!(
        views
            .docs
            .iter()
            .filter(|(w, _)| w.starts_with("nurse"))
            .all(|(_, d)| d.redacted.contains_key("psy") && d.get("hiv").is_some())
    );
    // Billing's query does not return the self-pay document at all.
    assert!(!views.docs.iter().any(|(w, d)| w.starts_with("billing") && d.id == paid));

    // 3. Errors of denied operations: no canary at all.
    assert_eq!(views.errors.len(), 12);
    for (who, e) in &views.errors {
        assert_absent(&e.to_string(), &ALL, &format!("{who}: error Display"));
        assert_absent(&format!("{e:?}"), &ALL, &format!("{who}: error Debug"));
    }

    // 4. Audit trail: no field value of any kind.
    v.flush_audit().unwrap();
    let entries = po.audit_entries().unwrap();
    assert!(entries.len() > 30, "{}", entries.len());
    assert_absent(&format!("{entries:?}"), &ALL, "audit entries");
    let fhir = po.audit_export_fhir().unwrap().to_string();
    assert!(fhir.contains("AuditEvent"));
    assert_absent(&fhir, &ALL, "FHIR audit export");

    // 5. Files: no canary in any file of the vault directory, permitted or not.
    drop((dr, po, coder, nurse, billing, res, stranger, admin));
    v.close().unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        files += 1;
        for c in ALL {
            assert!(!bytes.windows(c.len()).any(|w| w == c.as_bytes()), "{} contains {c} in plaintext", p.display());
        }
        // Nor any recognisable piece of one.
        assert!(!bytes.windows(7).any(|w| w == b"CANARY-"), "{} contains a canary prefix", p.display());
    }
    assert!(files >= 2, "data file and keyring expected, found {files}");
    // The vault is still whole and readable after all of that.
    let v = Vault::open(&path, VaultKey::Raw(&key), VaultOptions::default()).unwrap();
    assert!(v.verify().unwrap().is_clean());
}
