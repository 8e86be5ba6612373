//! Property: the default hospital policy grants exactly what its table says, for every
//! default role x every built-in label x a set of purposes x read/create/update/query,
//! through the real session API; and every denial leaves an audit entry.
//!
//! The expectations below are written out by hand from the README / `policy.rs` prose
//! (who may do what), not computed from the policy code.
//!
//! Set-up decisions, written down:
//! * One patient, `P1`. For every built-in label L there is one fixture document of
//!   kind `Observation` whose only field `x` carries L (via `with_labeled`). The schema
//!   labels every Observation field `normal`, so `x` really carries `{normal, L}`.
//! * The fixtures are created by a physician (purpose TREAT, care team `[P1]`). The
//!   default policy lets no role create `financial` content in an Observation
//!   (billing may create only Claim and Coverage documents), so the physician's
//!   create of that fixture is asserted to be denied and the fixture is then loaded
//!   below the access layer (`Vault::store().batch()`).
//! * 42 CFR Part 2: patient `P1` has given a Part 2 consent to organization
//!   `general-hospital` (everybody's organization here) for purpose TREAT only. So
//!   substance-use content is open to the care team for treatment (without it they
//!   could still create such content, which is not a use or disclosure, but not
//!   read, update or find it); the Part 2 denials themselves are exercised in
//!   `patient_rules.rs`.
//! * Physicians and nurses have care team `[P1]`; the patient principal is
//!   `.as_patient("P1")`; the other roles do not use care teams.
//! * Query: the vault's schema additionally indexes field `x` (otherwise no query can
//!   select on it), and every row runs `kind = Observation and x = "m-<label>"`, which
//!   matches exactly that label's fixture. Eligibility of a document for a query
//!   depends on the labels of the fields the query touches, so this column shows
//!   whether a *hidden* field can be used to find a document (it must not).
//! * No break-glass is requested here (see `patient_rules.rs`), so ETREAT rows show
//!   that the emergency purpose alone opens nothing.

use std::collections::BTreeMap;

use chartvault::access::{Part2Consent, PatientRules, Principal, Purpose, Role};
use chartvault::audit::Outcome;
use chartvault::model::Schema;
use chartvault::*;

/// The label columns of the table strings, in this order.
const COLS: [&str; 11] = [
    "normal",          // N
    "restricted",      // R
    "very-restricted", // V
    "demographics",    // D
    "financial",       // F
    "mental-health",   // M
    "psychotherapy",   // P
    "substance-use",   // S
    "hiv-sti",         // H
    "genetic",         // G
    "reproductive",    // X
];

const ORG: &str = "general-hospital";

/// (role, purpose, read, create, update, query); each string has one cell per column
/// of `COLS`.
/// * read:   `+` field `x` visible, `~` document returned with `x` redacted, `-` Error::Denied
/// * create: `+` Ok, `-` Error::Denied
/// * update: `+` Ok, `-` Error::Denied
/// * query:  `+` document counted (and `x` visible in it), `0` query runs but the
///   document is not counted, `-` query refused with Error::Denied
#[rustfmt::skip]
const MATRIX: &[(&str, &str, &str, &str, &str, &str)] = &[
    //                                   read           create         update         query
    //                                   NRVDFMPSHGX    NRVDFMPSHGX    NRVDFMPSHGX    NRVDFMPSHGX
    // Physician, treatment, care team: every clinical label; financial is not clinical.
    ("physician",       "TREAT",     "++++~++++++", "++++-++++++", "++++-++++++", "++++0++++++"),
    // ETREAT without an active break-glass grant opens nothing; a query under ETREAT
    // without break-glass is refused up front (and the refusal audited).
    ("physician",       "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("physician",       "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // Nurse: like the physician but never psychotherapy notes.
    ("nurse",           "TREAT",     "++++~+~++++", "++++-+-++++", "++++-+-++++", "++++0+0++++"),
    ("nurse",           "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("nurse",           "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // HIM coder: reads normal content for operations and payment, writes nothing
    // (an update is refused even though the current version is readable).
    ("him-coder",       "HOPERAT",   "+~~~~~~~~~~", "-----------", "-----------", "+0000000000"),
    ("him-coder",       "HPAYMT",    "+~~~~~~~~~~", "-----------", "-----------", "+0000000000"),
    ("him-coder",       "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("him-coder",       "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    // PUBHLTH is granted to the coder for disclosures and amendments only.
    ("him-coder",       "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // Billing: normal and financial content, for payment.
    ("billing",         "HPAYMT",    "+~~~+~~~~~~", "-----------", "-----------", "+000+000000"),
    ("billing",         "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("billing",         "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("billing",         "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // Researcher: normal content only, de-identified.
    ("researcher",      "HRESCH",    "+~~~~~~~~~~", "-----------", "-----------", "+0000000000"),
    ("researcher",      "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("researcher",      "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("researcher",      "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // The patient: their own record except psychotherapy notes (and financial, which
    // the default policy does not list for them); Part 2 does not apply to one's own
    // records. Reading only.
    ("patient",         "PATRQT",    "++++~+~++++", "-----------", "-----------", "++++0+0++++"),
    ("patient",         "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("patient",         "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("patient",         "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    // Privacy officer and security administrator: no clinical content at all.
    ("privacy-officer", "HCOMPL",    "-----------", "-----------", "-----------", "-----------"),
    ("privacy-officer", "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("privacy-officer", "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("privacy-officer", "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
    ("security-admin",  "HSYSADMIN", "-----------", "-----------", "-----------", "-----------"),
    ("security-admin",  "TREAT",     "-----------", "-----------", "-----------", "-----------"),
    ("security-admin",  "ETREAT",    "-----------", "-----------", "-----------", "-----------"),
    ("security-admin",  "PUBHLTH",   "-----------", "-----------", "-----------", "-----------"),
];

/// Each role's own purpose; every role must appear in MATRIX with it, TREAT and PUBHLTH.
const OWN_PURPOSE: [(&str, &str); 8] = [
    ("physician", "TREAT"),
    ("nurse", "TREAT"),
    ("him-coder", "HOPERAT"),
    ("billing", "HPAYMT"),
    ("researcher", "HRESCH"),
    ("patient", "PATRQT"),
    ("privacy-officer", "HCOMPL"),
    ("security-admin", "HSYSADMIN"),
];

fn principal(role: &str, purpose: Purpose) -> Principal {
    let p =
        Principal::new(&format!("{role}-{}", purpose.code().to_lowercase()), Role::new(role).unwrap(), ORG, purpose);
    match role {
        "physician" | "nurse" => p.with_care_team(["P1"]),
        "patient" => p.as_patient("P1"),
        _ => p,
    }
}

fn x_field(value: &str, label: &Label) -> BTreeMap<String, Field> {
    BTreeMap::from([("x".to_string(), Field { value: Value::Text(value.to_string()), labels: vec![label.clone()] })])
}

#[test]
fn default_policy_matrix() {
    // The table covers every built-in label, every default role with its own purpose,
    // TREAT and an unrelated purpose (PUBHLTH).
    let builtin: Vec<String> = Label::builtin().iter().map(|l| l.to_string()).collect();
    assert_eq!(builtin, COLS.to_vec(), "Label::builtin() changed: update the matrix columns");
    assert_eq!(chartvault::access::principal::DEFAULT_ROLES.len(), 8);
    for role in chartvault::access::principal::DEFAULT_ROLES {
        let own = OWN_PURPOSE.iter().find(|(r, _)| r == role).expect("role without own purpose").1;
        for purpose in [own, "TREAT", "PUBHLTH"] {
            assert!(MATRIX.iter().any(|r| r.0 == *role && r.1 == purpose), "matrix lacks ({role}, {purpose})");
        }
    }
    for row in MATRIX {
        for cells in [row.2, row.3, row.4, row.5] {
            assert_eq!(cells.len(), COLS.len(), "row {row:?}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut schema = Schema::hospital_default();
    schema.indexed.insert("x".into());
    let opts = VaultOptions { schema, ..VaultOptions::default() };
    let v = Vault::create(&dir.path().join("matrix.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();

    let po = v.session(Principal::new("po", Role::privacy_officer(), ORG, Purpose::Compliance)).unwrap();
    po.set_patient_rules(PatientRules {
        patient: "P1".into(),
        part2_consents: vec![Part2Consent { organization: ORG.into(), purposes: vec![Purpose::Treat], expires: None }],
        ..PatientRules::default()
    })
    .unwrap();

    // Fixtures.
    let dr =
        v.session(Principal::new("fixture-dr", Role::physician(), ORG, Purpose::Treat).with_care_team(["P1"])).unwrap();
    let mut fixtures: BTreeMap<&str, DocumentId> = BTreeMap::new();
    for name in COLS {
        let label = Label::new(name).unwrap();
        let doc = NewDocument::new("P1", "Observation").unwrap().with_labeled(
            "x",
            Value::Text(format!("m-{name}")),
            vec![label],
        );
        let id = match (name, dr.put(&doc)) {
            ("financial", Err(Error::Denied(_))) => {
                let mut b = v.store().batch().unwrap();
                let id = b.put(&doc, "fixture-loader").unwrap();
                b.commit().unwrap();
                id
            }
            ("financial", other) => panic!("a physician should not be able to create financial content: {other:?}"),
            (_, Ok(id)) => id,
            (_, Err(e)) => panic!("fixture {name}: {e}"),
        };
        fixtures.insert(name, id);
    }
    assert_eq!(fixtures.len(), 11);
    let denied_before = count_denied(&po);

    let mut mismatches: Vec<String> = Vec::new();
    let mut checks = 0usize;
    let mut expected_denials = 0usize;
    for &(role, purpose, read, create, update, query) in MATRIX {
        let purpose = Purpose::parse(purpose).unwrap();
        let s = v.session(principal(role, purpose)).unwrap();
        for (i, name) in COLS.iter().enumerate() {
            let label = Label::new(name).unwrap();
            let id = fixtures[name];
            let cell = |cells: &str| cells.as_bytes()[i] as char;
            let mut check = |op: &str, expected: char, got: String| {
                checks += 1;
                if expected == '-' {
                    expected_denials += 1;
                }
                if got != expected.to_string() {
                    mismatches
                        .push(format!("{role:15} {:9} {name:15} {op:6} expected {expected} got {got}", purpose.code()));
                }
            };

            // read
            let got = match s.get(&id) {
                Ok(d) if d.get("x") == Some(&Value::Text(format!("m-{name}"))) && d.redacted.is_empty() => {
                    if role == "researcher" && (d.patient == "P1" || !d.author.is_empty()) {
                        "+ (but not de-identified)".to_string()
                    } else {
                        "+".to_string()
                    }
                }
                Ok(d) if d.get("x").is_none() && d.redacted.contains_key("x") => "~".to_string(),
                Ok(d) => format!("? {d:?}"),
                Err(Error::Denied(_)) => "-".to_string(),
                Err(e) => format!("error {e}"),
            };
            check("read", cell(read), got);

            // query
            let got = match s.query_str(&format!("kind = Observation and x = \"m-{name}\"")) {
                Ok(r)
                    if r.total == 1
                        && r.documents.len() == 1
                        && r.documents[0].id == id
                        && r.documents[0].get("x").is_some() =>
                {
                    "+".to_string()
                }
                Ok(r) if r.total == 0 && r.documents.is_empty() => "0".to_string(),
                Ok(r) => format!("? total {} docs {:?}", r.total, r.documents),
                Err(Error::Denied(_)) => "-".to_string(),
                Err(e) => format!("error {e}"),
            };
            check("query", cell(query), got);

            // update (same value and labels: a new version, nothing else changes)
            let got = match s.update(&id, x_field(&format!("m-{name}"), &label)) {
                Ok(_) => "+".to_string(),
                Err(Error::Denied(_)) => "-".to_string(),
                Err(e) => format!("error {e}"),
            };
            check("update", cell(update), got);

            // create (a value no query above matches)
            let doc = NewDocument::new("P1", "Observation").unwrap().with_labeled(
                "x",
                Value::Text(format!("c-{name}-{role}")),
                vec![label.clone()],
            );
            let got = match s.put(&doc) {
                Ok(_) => "+".to_string(),
                Err(Error::Denied(_)) => "-".to_string(),
                Err(e) => format!("error {e}"),
            };
            check("create", cell(create), got);
        }
    }

    // Audit always: every denial in the matrix left exactly one denied entry.
    let denied = count_denied(&po) - denied_before;
    if denied != expected_denials {
        mismatches.push(format!("audit: {denied} denied entries for {expected_denials} expected denials"));
    }
    if !mismatches.is_empty() {
        eprintln!("{} of {checks} access-matrix checks differ from the table:", mismatches.len());
        for m in &mismatches {
            eprintln!("  {m}");
        }
    }
    assert_eq!(checks, MATRIX.len() * COLS.len() * 4);
    assert!(mismatches.is_empty(), "{} mismatches (see stderr)", mismatches.len());
}

fn count_denied(po: &Session) -> usize {
    po.audit_entries().unwrap().iter().filter(|e| e.outcome == Outcome::Denied).count()
}
