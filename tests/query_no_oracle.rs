//! Property: a query is never an oracle for something the session may not read.
//!
//! * Filtering or sorting on a field the session cannot read in any kind the query is
//!   pinned to is refused up front with `Error::Denied` (whatever the vault holds),
//!   and the refusal is audited as a denied query.
//! * Documents the session may not see (no care relationship, VIP, consent
//!   restriction, 42 CFR Part 2, self-pay, a kind or label it is not granted) never
//!   change results, `total` or pagination: a vault with extra hidden documents that
//!   would match answers exactly like one without them, and cursors taken before
//!   they were added continue identically.
//! * A field that carries an extra restricted label in one document never lets a
//!   query reveal its value: that document is not matched, whatever the value is
//!   (including values the index cannot hold: groups, long text, empty lists).
//! * A de-identified session cannot filter or sort on the real patient identifiers
//!   it is not shown.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chartvault::access::{ConsentRestriction, Part2Consent, PatientRules, Policy, Principal, Purpose, Role};
use chartvault::audit::{Action, Outcome};
use chartvault::query::Query;
use chartvault::{
    Coding, Date, DocumentId, Error, Label, NewDocument, SecretKey, Session, Value, Vault, VaultKey, VaultOptions,
};

const LOADER_ORG: &str = "records";

/// The default hospital policy plus a records-loader role that may write and read
/// every label (used to build fixtures and as the full-access reference reader).
fn policy() -> Policy {
    common::policy_with_loader()
}

struct Fx {
    _dir: tempfile::TempDir,
    vault: Vault,
    loader: Session,
    po: Session,
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions { initial_policy: policy(), checkpoint_every: 0, ..VaultOptions::default() };
    let vault = Vault::create(&dir.path().join("v.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();
    let patients: Vec<String> = (1..=9).map(|i| format!("P{i}")).collect();
    let loader = vault
        .session(
            Principal::new("loader", Role::new("records-loader").unwrap(), LOADER_ORG, Purpose::Operations)
                .with_care_team(patients),
        )
        .unwrap();
    let po = vault.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    Fx { _dir: dir, vault, loader, po }
}

fn physician(care: &[&str]) -> Principal {
    Principal::new("dr-1", Role::physician(), "h", Purpose::Treat).with_care_team(care.iter().copied())
}
fn nurse(care: &[&str]) -> Principal {
    Principal::new("nurse-1", Role::nurse(), "h", Purpose::Treat).with_care_team(care.iter().copied())
}
fn billing() -> Principal {
    Principal::new("bill-1", Role::billing(), "h", Purpose::Payment)
}
fn researcher() -> Principal {
    Principal::new("res-1", Role::researcher(), "uni", Purpose::Research)
}

fn date(s: &str) -> Value {
    Value::Date(Date::parse(s).unwrap())
}
fn loinc(c: &str) -> Value {
    Value::from(Coding::new("loinc", c, None))
}

/// A document: patient, kind, and (field, value, extra labels).
#[derive(Clone)]
struct Spec {
    patient: &'static str,
    kind: &'static str,
    fields: Vec<(&'static str, Value, Vec<Label>)>,
    self_pay: bool,
}

fn obs(patient: &'static str, seq: i64, code: &str, value: i64, eff: &str) -> Spec {
    Spec {
        patient,
        kind: "Observation",
        fields: vec![
            ("seq", Value::Integer(seq), vec![]),
            ("code", loinc(code), vec![]),
            ("value", Value::Integer(value), vec![]),
            ("effective", date(eff), vec![]),
            ("status", Value::Text("final".into()), vec![]),
        ],
        self_pay: false,
    }
}

impl Spec {
    fn label(mut self, field: &str, l: Label) -> Self {
        for f in &mut self.fields {
            if f.0 == field {
                f.2.push(l.clone());
            }
        }
        self
    }
    fn kind(mut self, k: &'static str) -> Self {
        self.kind = k;
        self
    }
    fn self_pay(mut self) -> Self {
        self.self_pay = true;
        self
    }
    fn put(&self, s: &Session) -> DocumentId {
        let mut d = NewDocument::new(self.patient, self.kind).unwrap();
        for (n, v, l) in &self.fields {
            d = d.with_labeled(n, v.clone(), l.clone());
        }
        s.put(&d).unwrap()
    }
}

/// The visible base: two patients, Observations and a Condition with a mix of
/// codes, values and dates.
fn base_docs() -> Vec<Spec> {
    vec![
        obs("P1", 1, "4548-4", 6, "2024-01-10"),
        obs("P2", 2, "4548-4", 9, "2024-03-05"),
        obs("P1", 3, "2345-7", 4, "2023-12-01"),
        obs("P2", 4, "4548-4", 2, "2024-02-14"),
        obs("P1", 5, "4548-4", 7, "2024-06-30"),
        obs("P2", 6, "2345-7", 11, "2024-01-01"),
        Spec {
            patient: "P1",
            kind: "Condition",
            fields: vec![
                ("seq", Value::Integer(7), vec![]),
                ("code", Value::from(Coding::new("snomed", "44054006", None)), vec![]),
                ("effective", date("2022-05-05"), vec![]),
            ],
            self_pay: false,
        },
        obs("P2", 8, "4548-4", 5, "2024-04-04"),
    ]
}

/// Queries that all touch `code` (so a document whose `code` is hidden is hidden
/// from every one of them), in both languages' features.
const QUERIES: &[&str] = &[
    "code = loinc:4548-4",
    "code = loinc:4548-4 and value >= 5 order by value desc",
    "code = \"4548-4\" order by effective",
    "not code = loinc:1111-1 and effective >= 2024-01-01 order by effective desc",
    "code in (loinc:4548-4, snomed:44054006) or value > 100 order by code",
    "code = loinc:4548-4 and kind = Observation order by created desc limit 3",
    "(code = loinc:4548-4 or status = \"final\") and not value < 0",
    "code != loinc:2345-7 order by value",
];

/// Every page of a query (page size 2 unless the query sets one): per page, the
/// total and the document ids.
fn pages(s: &Session, src: &str) -> Vec<(usize, Vec<DocumentId>)> {
    let mut q = chartvault::query::parse(src).unwrap();
    q.limit = q.limit.or(Some(2));
    let mut out = Vec::new();
    loop {
        let r = s.query(&q).unwrap_or_else(|e| panic!("{src}: {e}"));
        out.push((r.total, r.documents.iter().map(|d| d.id).collect()));
        match r.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
        assert!(out.len() < 100, "{src}: runaway pagination");
    }
    out
}

/// The pages after the first one, continuing from a cursor.
fn continue_from(s: &Session, src: &str, cursor: &str) -> Vec<(usize, Vec<DocumentId>)> {
    let mut q: Query = chartvault::query::parse(src).unwrap();
    q.limit = q.limit.or(Some(2));
    q.cursor = Some(cursor.to_string());
    let mut out = Vec::new();
    loop {
        let r = s.query(&q).unwrap();
        out.push((r.total, r.documents.iter().map(|d| d.id).collect()));
        match r.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    out
}

/// Replaces ids by the `seq` field the full-access reader sees, so results of two
/// vaults can be compared.
fn signature(loader: &Session, pages: &[(usize, Vec<DocumentId>)]) -> Vec<(usize, Vec<i64>)> {
    pages
        .iter()
        .map(|(t, ids)| {
            let seqs = ids
                .iter()
                .map(|id| match loader.get(id).unwrap().get("seq") {
                    Some(Value::Integer(i)) => *i,
                    other => panic!("seq: {other:?}"),
                })
                .collect();
            (*t, seqs)
        })
        .collect()
}

fn apply_rules(fx: &Fx, rules: &BTreeMap<&'static str, PatientRules>, self_pay: &[(&'static str, DocumentId)]) {
    let mut all = rules.clone();
    for (p, id) in self_pay {
        all.entry(p)
            .or_insert_with(|| PatientRules { patient: (*p).to_string(), ..Default::default() })
            .self_pay
            .insert(*id);
    }
    for r in all.into_values() {
        fx.po.set_patient_rules(r).unwrap();
    }
}

struct Scenario {
    name: &'static str,
    viewer: Principal,
    rules: BTreeMap<&'static str, PatientRules>,
    hidden: Vec<Spec>,
}

fn run_scenario(sc: &Scenario) {
    let base = base_docs();
    // Vault A: the base documents; baseline answers; then the hidden documents are
    // added and every answer must stay identical.
    let a = fixture();
    // Rules first (the loader's own Part 2 consent must exist before it writes).
    apply_rules(&a, &sc.rules, &[]);
    let mut self_pay = Vec::new();
    for d in &base {
        let id = d.put(&a.loader);
        if d.self_pay {
            self_pay.push((d.patient, id));
        }
    }
    apply_rules(&a, &sc.rules, &self_pay);
    let viewer = a.vault.session(sc.viewer.clone()).unwrap();
    let before: Vec<_> = QUERIES.iter().map(|q| pages(&viewer, q)).collect();
    let loader_before = a.loader.query_str(QUERIES[0]).unwrap().total;
    for (q, p) in QUERIES.iter().zip(&before) {
        assert!(p[0].0 > 0, "{}: {q} matches nothing visible; the scenario proves nothing", sc.name);
    }
    // Cursors taken before the hidden documents exist.
    let cursors: Vec<Option<String>> = QUERIES
        .iter()
        .map(|q| {
            let mut qq = chartvault::query::parse(q).unwrap();
            qq.limit = qq.limit.or(Some(2));
            viewer.query(&qq).unwrap().next_cursor
        })
        .collect();
    for d in &sc.hidden {
        let id = d.put(&a.loader);
        if d.self_pay {
            self_pay.push((d.patient, id));
        }
    }
    apply_rules(&a, &sc.rules, &self_pay);
    // The hidden documents do match for a reader entitled to them.
    let loader_after = a.loader.query_str(QUERIES[0]).unwrap().total;
    assert_eq!(
        loader_after,
        loader_before + sc.hidden.len(),
        "{}: hidden documents must match {}",
        sc.name,
        QUERIES[0]
    );
    for ((q, b), c) in QUERIES.iter().zip(&before).zip(&cursors) {
        let after = pages(&viewer, q);
        assert_eq!(&after, b, "{}: {q}: hidden documents changed the answer", sc.name);
        if let Some(c) = c {
            assert_eq!(
                continue_from(&viewer, q, c),
                b[1..].to_vec(),
                "{}: {q}: a cursor continued differently",
                sc.name
            );
        }
    }

    // Vault B: the same base documents with the hidden ones interleaved between them.
    let b = fixture();
    apply_rules(&b, &sc.rules, &[]);
    let mut self_pay = Vec::new();
    let mut hidden = sc.hidden.iter();
    for d in &base {
        for d in [Some(d), hidden.next()].into_iter().flatten() {
            let id = d.put(&b.loader);
            if d.self_pay {
                self_pay.push((d.patient, id));
            }
        }
    }
    for d in hidden {
        let id = d.put(&b.loader);
        if d.self_pay {
            self_pay.push((d.patient, id));
        }
    }
    apply_rules(&b, &sc.rules, &self_pay);
    let viewer_b = b.vault.session(sc.viewer.clone()).unwrap();
    for (q, p) in QUERIES.iter().zip(&before) {
        let want = signature(&a.loader, p);
        let got = signature(&b.loader, &pages(&viewer_b, q));
        assert_eq!(
            got, want,
            "{}: {q}: totals or pages differ between the vaults with and without hidden documents",
            sc.name
        );
    }
    assert_eq!(b.loader.query_str(QUERIES[0]).unwrap().total, loader_after, "{}", sc.name);
}

fn rules(patient: &'static str, f: impl FnOnce(&mut PatientRules)) -> BTreeMap<&'static str, PatientRules> {
    let mut r = PatientRules { patient: patient.to_string(), ..Default::default() };
    f(&mut r);
    [(patient, r)].into()
}

#[test]
fn no_care_relationship_hides_documents_from_results_and_totals() {
    for viewer in [physician(&["P1", "P2"]), nurse(&["P1", "P2"])] {
        run_scenario(&Scenario {
            name: "no care relationship",
            viewer,
            rules: BTreeMap::new(),
            hidden: vec![
                obs("P3", 101, "4548-4", 8, "2024-01-15"),
                obs("P3", 102, "4548-4", 1, "2024-05-01"),
                obs("P4", 103, "4548-4", 50, "2023-01-01"),
            ],
        });
    }
}

#[test]
fn vip_patients_are_hidden_without_a_care_relationship() {
    for viewer in [billing(), researcher()] {
        run_scenario(&Scenario {
            name: "VIP",
            viewer,
            rules: rules("P4", |r| r.vip = true),
            hidden: vec![obs("P4", 201, "4548-4", 8, "2024-01-15"), obs("P4", 202, "4548-4", 6, "2024-07-01")],
        });
    }
}

#[test]
fn consent_restrictions_hide_the_restricted_label() {
    let restrict = |r: &mut PatientRules| {
        r.restrictions.push(ConsentRestriction {
            labels: vec![Label::hiv_sti()],
            roles: vec![Role::nurse(), Role::physician()],
            organizations: Vec::new(),
            purposes: Vec::new(),
        })
    };
    for viewer in [nurse(&["P1", "P2"]), physician(&["P1", "P2"])] {
        run_scenario(&Scenario {
            name: "consent restriction",
            viewer,
            rules: rules("P2", restrict),
            hidden: vec![
                obs("P2", 301, "4548-4", 8, "2024-01-15").label("code", Label::hiv_sti()),
                obs("P2", 302, "4548-4", 3, "2024-02-20")
                    .label("code", Label::hiv_sti())
                    .label("value", Label::hiv_sti()),
            ],
        });
    }
}

#[test]
fn part2_records_are_hidden_without_consent() {
    let consent_for_loader_only = |r: &mut PatientRules| {
        r.part2_consents.push(Part2Consent {
            organization: LOADER_ORG.into(),
            purposes: vec![Purpose::Operations],
            expires: None,
        })
    };
    for viewer in [physician(&["P1", "P2"]), nurse(&["P1", "P2"])] {
        run_scenario(&Scenario {
            name: "42 CFR Part 2",
            viewer,
            rules: rules("P1", consent_for_loader_only),
            hidden: vec![
                obs("P1", 401, "4548-4", 8, "2024-01-15").label("code", Label::substance_use()),
                obs("P1", 402, "4548-4", 12, "2024-03-03")
                    .label("code", Label::substance_use())
                    .label("value", Label::substance_use()),
            ],
        });
    }
}

#[test]
fn self_pay_documents_are_hidden_from_payment() {
    run_scenario(&Scenario {
        name: "self-pay",
        viewer: billing(),
        rules: BTreeMap::new(),
        hidden: vec![
            obs("P1", 501, "4548-4", 8, "2024-01-15").self_pay(),
            obs("P2", 502, "4548-4", 5, "2024-08-08").self_pay(),
        ],
    });
}

#[test]
fn kinds_and_labels_not_granted_are_hidden() {
    run_scenario(&Scenario {
        name: "psychotherapy notes for a nurse",
        viewer: nurse(&["P1", "P2"]),
        rules: BTreeMap::new(),
        hidden: vec![obs("P1", 601, "4548-4", 8, "2024-01-15").kind("PsychotherapyNote")],
    });
    for viewer in [researcher(), billing()] {
        run_scenario(&Scenario {
            name: "restricted and genetic labels",
            viewer,
            rules: BTreeMap::new(),
            hidden: vec![
                // In a ClinicalNote, code, value and effective carry the `restricted` label.
                obs("P1", 701, "4548-4", 8, "2024-01-15").kind("ClinicalNote"),
                obs("P2", 702, "4548-4", 6, "2024-02-02").label("code", Label::genetic()),
            ],
        });
    }
}

#[test]
fn refused_fields_are_denied_and_audited_whatever_the_vault_holds() {
    let fx = fixture();
    let nurse = fx.vault.session(nurse(&["P1"])).unwrap();
    let billing = fx.vault.session(billing()).unwrap();
    let researcher = fx.vault.session(researcher()).unwrap();
    let refused: Vec<(&Session, &str)> = vec![
        // Every field of a psychotherapy note is unreadable for a nurse (the kind is
        // excluded from the nurse's grants), including its normal-labelled date.
        (&nurse, "kind = PsychotherapyNote and text = \"x\""),
        (&nurse, "kind = PsychotherapyNote and date >= 2000-01-01"),
        (&nurse, "kind = PsychotherapyNote order by date desc"),
        (&nurse, "kind = PsychotherapyNote and not code = loinc:1"),
        (&billing, "kind = ClinicalNote and text = \"x\""),
        (&billing, "kind = ClinicalNote order by text"),
        (&billing, "kind in (ClinicalNote, DocumentReference) and text = \"x\""),
        (&billing, "kind = ClinicalNote and (text = \"a\" or status = \"final\")"),
        (&researcher, "kind = Claim and value > 1"),
        (&researcher, "kind = ClinicalNote order by code"),
    ];
    let run = |label: &str| {
        for (s, q) in &refused {
            match s.query_str(q) {
                Err(Error::Denied(reason)) => {
                    assert!(reason.contains("may not filter or sort"), "{q}: {reason}");
                }
                other => panic!("{label}: {q} by {}: expected Denied, got {other:?}", s.principal().user),
            }
        }
    };
    // Refused on an empty vault ...
    run("empty vault");
    // ... and on a vault that holds matching documents.
    let notes = [
        Spec {
            patient: "P1",
            kind: "PsychotherapyNote",
            fields: vec![("text", Value::Text("x".into()), vec![]), ("date", date("2024-01-01"), vec![])],
            self_pay: false,
        },
        Spec {
            patient: "P1",
            kind: "ClinicalNote",
            fields: vec![("text", Value::Text("x".into()), vec![]), ("status", Value::Text("final".into()), vec![])],
            self_pay: false,
        },
        Spec {
            patient: "P1",
            kind: "Claim",
            fields: vec![("value", Value::Integer(5), vec![]), ("code", loinc("4548-4"), vec![])],
            self_pay: false,
        },
    ];
    for n in &notes {
        n.put(&fx.loader);
    }
    run("populated vault");
    // Fields readable in the pinned kind are not refused.
    for (s, q) in [
        (&billing, "kind = ClinicalNote and status = \"final\""),
        (&nurse, "kind = ClinicalNote and text = \"x\""),
        (&researcher, "kind = Observation and value > 1"),
        (&billing, "kind = Claim and value > 1"),
    ] {
        assert!(s.query_str(q).is_ok(), "{q}");
    }
    // Every refusal is in the audit trail as a denied query of that user.
    let entries = fx.po.audit_entries().unwrap();
    for user in ["nurse-1", "bill-1", "res-1"] {
        let denied: Vec<_> = entries
            .iter()
            .filter(|e| e.user == user && e.action == Action::Query && e.outcome == Outcome::Denied)
            .collect();
        let expected = 2 * refused.iter().filter(|(s, _)| s.principal().user == user).count();
        assert_eq!(denied.len(), expected, "denied queries audited for {user}");
        assert!(denied.iter().all(|e| e.documents.is_empty() && !e.detail.is_empty()));
    }
}

#[test]
fn an_extra_label_on_one_document_never_reveals_its_value() {
    let fx = fixture();
    let hiv = || vec![Label::hiv_sti()];
    let group = Value::Group(
        [("systolic".to_string(), Value::Integer(120)), ("diastolic".to_string(), Value::Integer(80))].into(),
    );
    let long = Value::Text("x".repeat(300));
    let final_ = || Value::Text("final".into());
    let mk = |value: Value, vl: Vec<Label>, status: Value, sl: Vec<Label>| {
        NewDocument::new("P1", "Observation")
            .unwrap()
            .with_labeled("value", value, vl)
            .with_labeled("status", status, sl)
    };
    let docs: Vec<(&str, NewDocument)> = vec![
        ("A", mk(Value::Integer(7), vec![], final_(), vec![])),
        ("B", mk(Value::Integer(3), vec![], Value::Text("preliminary".into()), vec![])),
        ("C", mk(Value::Integer(7), hiv(), final_(), vec![])),
        ("D", mk(Value::Integer(3), hiv(), final_(), vec![])),
        ("E", mk(group.clone(), hiv(), final_(), vec![])),
        ("F", mk(Value::List(vec![Value::Integer(7), Value::Integer(3)]), hiv(), final_(), vec![])),
        ("G", mk(Value::List(vec![]), hiv(), final_(), vec![])),
        ("H", mk(long.clone(), hiv(), final_(), vec![])),
        ("I", mk(Value::Integer(7), vec![], final_(), hiv())),
        ("J", mk(Value::Integer(7), vec![], long, hiv())),
        ("K", mk(Value::Integer(7), vec![], group, hiv())),
    ];
    let mut name_of = BTreeMap::new();
    for (n, d) in &docs {
        name_of.insert(fx.loader.put(d).unwrap(), *n);
    }
    let value_hidden: BTreeSet<&str> = ["C", "D", "E", "F", "G", "H"].into();
    let status_hidden: BTreeSet<&str> = ["I", "J", "K"].into();
    let names = |s: &Session, q: &str| -> Vec<&str> {
        let r = s.query_str(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(r.total, r.documents.len(), "{q}");
        r.documents.iter().map(|d| name_of[&d.id]).collect()
    };
    let value_queries = [
        "value = 7",
        "value != 7",
        "value > 5",
        "value <= 5",
        "not value = 3",
        "value in (3, 7)",
        "not value in (3, 7)",
        "value = 7 or not value = 7",
        "value >= -1000000 or value < -1000000 or not value >= -1000000",
        "kind = Observation order by value",
        "kind = Observation order by value desc",
        "value = \"x\" or not value = \"x\"",
    ];
    let status_queries = [
        "status = \"final\"",
        "status != \"final\"",
        "not status = \"x\"",
        "status > \"\"",
        "status = \"final\" or not status = \"final\"",
        "kind = Observation order by status",
    ];
    for who in [billing(), researcher()] {
        let s = fx.vault.session(who).unwrap();
        for q in value_queries {
            let got = names(&s, q);
            assert!(got.iter().all(|n| !value_hidden.contains(n)), "{q}: {got:?} reveals a hidden value");
        }
        for q in status_queries {
            let got = names(&s, q);
            assert!(got.iter().all(|n| !status_hidden.contains(n)), "{q}: {got:?} reveals a hidden status");
        }
        // Tautologies over a field match exactly the documents whose field is readable.
        assert_eq!(names(&s, "value = 7 or not value = 7"), ["A", "B", "I", "J", "K"]);
        assert_eq!(names(&s, "status = \"final\" or not status = \"final\""), ["A", "B", "C", "D", "E", "F", "G", "H"]);
        assert_eq!(names(&s, "kind = Observation order by value"), ["B", "A", "I", "J", "K"]);
        assert_eq!(names(&s, "value = 7 and status = \"final\""), ["A"]);
        assert_eq!(names(&s, "not (value = 7 and status = \"final\")"), ["B"]);
    }
    // A session entitled to the label sees every document, so the label is the reason.
    let dr = fx.vault.session(physician(&["P1"])).unwrap();
    assert_eq!(names(&dr, "value = 7 or not value = 7").len(), docs.len());
    assert_eq!(names(&dr, "value = 7"), ["A", "C", "F", "I", "J", "K"]);
}

#[test]
fn de_identified_sessions_cannot_filter_or_sort_on_real_patient_ids() {
    let fx = fixture();
    let mut ids: BTreeMap<&str, Vec<DocumentId>> = BTreeMap::new();
    for (i, p) in ["P1", "P2", "P3", "P4", "P5", "P6"].into_iter().enumerate() {
        for j in 0..=(i % 2) {
            ids.entry(p)
                .or_default()
                .push(obs(p, (10 * i + j) as i64, "4548-4", i as i64, "2024-01-01").put(&fx.loader));
        }
    }
    let all: usize = ids.values().map(Vec::len).sum();
    let res = fx.vault.session(researcher()).unwrap();
    // The researcher sees pseudonyms, never the real identifiers.
    let pseudo: BTreeMap<&str, String> = ids.iter().map(|(p, v)| (*p, res.get(&v[0]).unwrap().patient)).collect();
    assert!(pseudo.iter().all(|(p, ps)| ps != p && !ps.contains(p)));
    // So the real identifiers are no better than made-up ones as a filter.
    for q in [
        "patient = \"P1\"",
        "patient = \"P1\" and code = loinc:4548-4",
        "patient in (\"P1\", \"P2\")",
        "code = loinc:4548-4 and patient = \"P2\" and value = 1",
    ] {
        let nobody = q.replace("P1", "NOBODY").replace("P2", "NOBODY2");
        let (a, b) = (res.query_str(q).unwrap(), res.query_str(&nobody).unwrap());
        assert_eq!((a.total, a.documents.len()), (b.total, b.documents.len()), "{q} is a re-identification oracle");
        assert_eq!(a.total, 0, "{q}");
    }
    assert_eq!(res.query_str("patient != \"P1\"").unwrap().total, all);
    assert_eq!(res.query_str("not patient in (\"P1\", \"P2\")").unwrap().total, all);
    // The pseudonyms the session is shown work as identifiers.
    for (p, ps) in &pseudo {
        let r = res.query_str(&format!("patient = \"{ps}\"")).unwrap();
        assert_eq!(r.total, ids[p].len(), "{p}");
        assert!(r.documents.iter().all(|d| &d.patient == ps));
    }
    // Sorting by patient sorts by what the session sees.
    for desc in [false, true] {
        let r = res
            .query_str(&format!("code = loinc:4548-4 order by patient {}", if desc { "desc" } else { "asc" }))
            .unwrap();
        assert_eq!(r.documents.len(), all);
        let seen: Vec<&str> = r.documents.iter().map(|d| d.patient.as_str()).collect();
        let mut sorted = seen.clone();
        sorted.sort();
        if desc {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "order by patient must follow the pseudonyms");
    }
    // A session shown real identifiers still filters on them.
    let dr = fx.vault.session(physician(&["P1", "P2", "P3", "P4", "P5", "P6"])).unwrap();
    assert_eq!(dr.query_str("patient = \"P2\"").unwrap().total, ids["P2"].len());
}
