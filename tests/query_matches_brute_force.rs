//! Property: for random small vaults and random queries, every session's answer
//! equals a brute-force evaluation written here, independently of the executor,
//! over all documents decrypted by a full-access reader and restricted to what the
//! session can see: the same documents in the same order, the same `total` on every
//! page, and the same refusals.
//!
//! The semantics implemented below (from `src/query/ast.rs`, `exec.rs` and
//! `docs/QUERY.md`):
//! * a comparison on a field holding a list matches if any element matches
//!   (existential); `f != v` is `not (f = v)`; `f in (a, b)` is `f = a or f = b`;
//! * dates and datetimes compare on one time line (a date is 00:00 UTC that day),
//!   integers and decimals numerically, text and codes exactly; a bare string equals
//!   (and compares with) a code's code; values of different types never match;
//! * `kind`, `patient` (the identifier the session is shown: a pseudonym for a
//!   de-identified session), `created` and `updated` are document attributes;
//! * results are sorted by the order field (the smallest value of a list; documents
//!   without a value last, in both directions), then creation time, then id;
//! * a document takes part only if the session can `get` it and can read every field
//!   the query filters or sorts on in it; if the document lacks such a field, the
//!   whole document must be readable;
//! * a query filtering or sorting on a field the session cannot read in any kind the
//!   query is pinned to (top-level `kind = K` / `kind in (...)`; otherwise every
//!   kind) is refused with `Denied`.

mod common;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use chartvault::access::{Policy, Principal, Purpose, Role};
use chartvault::query::{CmpOp, Expr, Literal, Order, Query, QueryBuilder};
use chartvault::{
    Coding, Date, DateTime, Decimal, Document, DocumentId, Error, Kind, Label, NewDocument, Schema, SecretKey, Session,
    Value, Vault, VaultKey, VaultOptions,
};
use proptest::prelude::*;

const PATIENTS: [&str; 4] = ["P0", "P1", "P2", "P3"];
const KINDS: [&str; 4] = ["Observation", "Condition", "ClinicalNote", "Claim"];
/// Kinds a query may name: the stored ones, one never stored, and a custom kind.
const QUERY_KINDS: [&str; 6] = ["Observation", "Condition", "ClinicalNote", "Claim", "PsychotherapyNote", "Wearable"];
const SYSTEMS: [&str; 3] = ["loinc", "snomed", "icd10cm"];
const CODES: [&str; 3] = ["A1", "B2", "C3"];
const STATUSES: [&str; 4] = ["amended", "cancelled", "final", "preliminary"];
const FIELDS: [&str; 4] = ["code", "effective", "value", "status"];
const ORDER_FIELDS: [&str; 9] = ["code", "effective", "value", "status", "created", "updated", "kind", "patient", "id"];
const DAY_US: i64 = 86_400_000_000;

// ---------------------------------------------------------------------------------
// Generated vaults

#[derive(Debug, Clone)]
struct DocSpec {
    patient: usize,
    kind: usize,
    /// (field, value, extra label)
    fields: Vec<(&'static str, Value, Option<Label>)>,
}

fn base_day() -> i32 {
    Date::parse("2024-01-01").unwrap().days()
}

fn date_value(d: i32) -> Value {
    Value::Date(Date::from_days(base_day() + d).unwrap())
}

fn datetime_value(d: i32, hour: u32, offset: usize) -> Value {
    let date = Date::from_days(base_day() + d).unwrap();
    let off = ["Z", "+05:00", "-05:00"][offset];
    Value::DateTime(DateTime::parse(&format!("{date}T{hour:02}:00:00{off}")).unwrap())
}

fn coding() -> impl Strategy<Value = Coding> + Clone {
    (0..SYSTEMS.len(), 0..CODES.len()).prop_map(|(s, c)| Coding::new(SYSTEMS[s], CODES[c], None))
}

fn time_scalar() -> impl Strategy<Value = Value> + Clone {
    // Hours 0 and 5 with offsets put datetimes exactly at, before and after midnight UTC.
    prop_oneof![
        (0..5i32).prop_map(date_value),
        (0..5i32, prop::sample::select(vec![0u32, 5, 12, 23]), 0..3usize).prop_map(|(d, h, o)| datetime_value(d, h, o)),
    ]
}

fn num_scalar() -> impl Strategy<Value = Value> + Clone {
    // Halves from -2 to 5.5: 3.0 and 3 are the same number.
    prop_oneof![(-2..6i64).prop_map(Value::Integer), (-4..12i64).prop_map(|n| Value::Decimal(Decimal::new(n * 5, 1))),]
}

fn maybe_list(s: impl Strategy<Value = Value> + Clone) -> impl Strategy<Value = Value> {
    prop_oneof![4 => s.clone(), 1 => prop::collection::vec(s, 1..3).prop_map(Value::List)]
}

fn label() -> impl Strategy<Value = Option<Label>> {
    prop_oneof![8 => Just(None), 1 => Just(Some(Label::hiv_sti())), 1 => Just(Some(Label::mental_health()))]
}

fn field(
    name: &'static str,
    v: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Option<(&'static str, Value, Option<Label>)>> {
    prop::option::weighted(0.8, (v, label()).prop_map(move |(v, l)| (name, v, l)))
}

fn doc_spec() -> impl Strategy<Value = DocSpec> {
    (
        0..PATIENTS.len(),
        0..KINDS.len(),
        field("code", maybe_list(coding().prop_map(Value::from))),
        field("effective", maybe_list(time_scalar())),
        field("value", maybe_list(num_scalar())),
        field("status", (0..STATUSES.len()).prop_map(|i| Value::Text(STATUSES[i].into()))),
    )
        .prop_map(|(patient, kind, c, e, v, s)| DocSpec {
            patient,
            kind,
            fields: [c, e, v, s].into_iter().flatten().collect(),
        })
}

// ---------------------------------------------------------------------------------
// Generated queries (literals naming patients or creation times are resolved once
// the vault exists)

#[derive(Debug, Clone)]
enum QLit {
    Lit(Literal),
    /// Patient `i` (4: one that does not exist), as its identifier or its pseudonym.
    Patient(usize, bool),
    /// The creation time of the `i`-th document (mod count), shifted by microseconds.
    Created(usize, i64),
    /// The UTC date of that creation time, shifted by days.
    CreatedDate(usize, i32),
}

#[derive(Debug, Clone)]
enum QExpr {
    Cmp(&'static str, CmpOp, QLit),
    In(&'static str, Vec<QLit>),
    And(Box<QExpr>, Box<QExpr>),
    Or(Box<QExpr>, Box<QExpr>),
    Not(Box<QExpr>),
}

#[derive(Debug, Clone)]
struct QSpec {
    filter: Option<QExpr>,
    order: Option<(&'static str, bool)>,
    limit: Option<usize>,
    as_text: bool,
}

fn any_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge])
}

fn eq_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne])
}

/// A literal of the type field `f` holds.
fn literal_for(f: &'static str) -> BoxedStrategy<Literal> {
    match f {
        "code" => prop_oneof![
            coding().prop_map(|c| Literal::Code(c.system, c.code)),
            // A bare string compares with the code of any system.
            (0..CODES.len() + 1).prop_map(|i| Literal::Text(CODES.get(i).copied().unwrap_or("B").into())),
        ]
        .boxed(),
        "effective" => time_scalar()
            .prop_map(|v| match v {
                Value::Date(d) => Literal::Date(d),
                Value::DateTime(t) => Literal::DateTime(t),
                _ => unreachable!(),
            })
            .boxed(),
        "value" => num_scalar()
            .prop_map(|v| match v {
                Value::Integer(i) => Literal::Number(i.into()),
                Value::Decimal(d) => Literal::Number(d),
                _ => unreachable!(),
            })
            .boxed(),
        _ => (0..STATUSES.len() + 1)
            .prop_map(|i| Literal::Text(STATUSES.get(i).copied().unwrap_or("draft").into()))
            .boxed(),
    }
}

/// A literal of some other type (never matches, except through `!=` / `not`).
fn wrong_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<bool>().prop_map(Literal::Boolean),
        Just(Literal::Number(3.into())),
        Just(Literal::Text("A1".into())),
        Just(Literal::Date(Date::parse("2024-01-02").unwrap())),
    ]
}

fn value_literal(f: &'static str) -> impl Strategy<Value = QLit> {
    prop_oneof![6 => literal_for(f), 1 => wrong_literal()].prop_map(QLit::Lit)
}

fn leaf() -> impl Strategy<Value = QExpr> {
    let field = prop::sample::select(FIELDS.to_vec());
    let kind = (0..QUERY_KINDS.len()).prop_map(|i| QLit::Lit(Literal::Text(QUERY_KINDS[i].into())));
    let patient = (0..PATIENTS.len() + 1, prop::bool::weighted(0.3)).prop_map(|(i, p)| QLit::Patient(i, p));
    let time_attr = prop::sample::select(vec!["created", "updated"]);
    let pivot = prop_oneof![
        (0..16usize, -1..=1i64).prop_map(|(i, s)| QLit::Created(i, s)),
        (0..16usize, -1..=1i32).prop_map(|(i, s)| QLit::CreatedDate(i, s)),
    ];
    prop_oneof![
        6 => field.clone().prop_flat_map(|f| (Just(f), any_op(), value_literal(f))).prop_map(|(f, op, l)| QExpr::Cmp(f, op, l)),
        2 => field.prop_flat_map(|f| (Just(f), prop::collection::vec(value_literal(f), 1..4))).prop_map(|(f, ls)| QExpr::In(f, ls)),
        2 => (eq_op(), kind.clone()).prop_map(|(op, k)| QExpr::Cmp("kind", op, k)),
        1 => prop::collection::vec(kind, 1..3).prop_map(|ks| QExpr::In("kind", ks)),
        2 => (eq_op(), patient.clone()).prop_map(|(op, p)| QExpr::Cmp("patient", op, p)),
        1 => prop::collection::vec(patient, 1..3).prop_map(|ps| QExpr::In("patient", ps)),
        1 => (time_attr, any_op(), pivot).prop_map(|(f, op, p)| QExpr::Cmp(f, op, p)),
    ]
}

fn expr() -> impl Strategy<Value = QExpr> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| QExpr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| QExpr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| QExpr::Not(Box::new(a))),
        ]
    })
}

fn query_spec() -> impl Strategy<Value = QSpec> {
    (
        prop::option::weighted(0.9, expr()),
        prop::option::weighted(0.6, (prop::sample::select(ORDER_FIELDS.to_vec()), any::<bool>())),
        prop::option::weighted(0.6, 1..8usize),
        any::<bool>(),
    )
        .prop_map(|(filter, order, limit, as_text)| QSpec { filter, order, limit, as_text })
}

// ---------------------------------------------------------------------------------
// The vault and its sessions

fn policy() -> Policy {
    common::policy_with_loader()
}

/// What the oracle knows of a role under the default policy (the README's table):
/// the labels its query grant covers and the kinds it excludes.
struct RoleModel {
    labels: BTreeSet<Label>,
    excluded_kinds: &'static [&'static str],
}

fn role_model(name: &str) -> RoleModel {
    let all: BTreeSet<Label> = Label::builtin().into_iter().collect();
    let clinical: BTreeSet<Label> = all.iter().filter(|l| **l != Label::financial()).cloned().collect();
    match name {
        "physician" => RoleModel { labels: clinical, excluded_kinds: &[] },
        "nurse" => RoleModel {
            labels: clinical.into_iter().filter(|l| *l != Label::psychotherapy()).collect(),
            excluded_kinds: &["PsychotherapyNote"],
        },
        "billing" => RoleModel { labels: [Label::normal(), Label::financial()].into(), excluded_kinds: &[] },
        "researcher" => RoleModel { labels: [Label::normal()].into(), excluded_kinds: &[] },
        _ => RoleModel { labels: all, excluded_kinds: &[] },
    }
}

fn principals() -> Vec<(&'static str, Principal)> {
    vec![
        ("loader", Principal::new("loader", Role::new("records-loader").unwrap(), "records", Purpose::Operations)),
        ("physician", Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["P0", "P1"])),
        ("nurse", Principal::new("rn", Role::nurse(), "h", Purpose::Treat).with_care_team(["P1", "P2"])),
        ("billing", Principal::new("bill", Role::billing(), "h", Purpose::Payment)),
        ("researcher", Principal::new("res", Role::researcher(), "u", Purpose::Research)),
    ]
}

/// A stored document as the oracle sees it.
struct Stored {
    full: Document,
}

struct Ctx<'a> {
    stored: &'a [Stored],
    /// Creation times, ascending.
    created: Vec<i64>,
    /// Patient index -> the pseudonym a de-identified session is shown.
    pseudonyms: BTreeMap<usize, String>,
}

fn patient_name(i: usize) -> &'static str {
    PATIENTS.get(i).copied().unwrap_or("P9")
}

impl Ctx<'_> {
    fn lit(&self, l: &QLit) -> Literal {
        match l {
            QLit::Lit(l) => l.clone(),
            QLit::Patient(i, false) => Literal::Text(patient_name(*i).into()),
            QLit::Patient(i, true) => {
                Literal::Text(self.pseudonyms.get(i).cloned().unwrap_or_else(|| format!("anon-none-{i}")))
            }
            QLit::Created(i, shift) => Literal::DateTime(DateTime::from_unix_micros(self.pivot(*i) + shift)),
            QLit::CreatedDate(i, shift) => {
                Literal::Date(Date::from_days((self.pivot(*i).div_euclid(DAY_US)) as i32 + shift).unwrap())
            }
        }
    }

    fn pivot(&self, i: usize) -> i64 {
        self.created[i % self.created.len()]
    }

    fn expr(&self, e: &QExpr) -> Expr {
        match e {
            QExpr::Cmp(f, op, l) => Expr::Cmp((*f).into(), *op, self.lit(l)),
            QExpr::In(f, ls) => Expr::In((*f).into(), ls.iter().map(|l| self.lit(l)).collect()),
            QExpr::And(a, b) => Expr::And(Box::new(self.expr(a)), Box::new(self.expr(b))),
            QExpr::Or(a, b) => Expr::Or(Box::new(self.expr(a)), Box::new(self.expr(b))),
            QExpr::Not(a) => Expr::Not(Box::new(self.expr(a))),
        }
    }

    fn query(&self, s: &QSpec) -> Query {
        let mut b = QueryBuilder::new();
        if let Some(f) = &s.filter {
            b = b.filter(self.expr(f));
        }
        if let Some((f, desc)) = s.order {
            b = b.order_by(f, desc);
        }
        if let Some(n) = s.limit {
            b = b.limit(n);
        }
        b.build()
    }
}

// ---------------------------------------------------------------------------------
// The brute-force evaluator

/// A value on the query language's scales.
#[derive(Debug, Clone)]
enum V {
    Num(Decimal),
    Time(i64),
    Text(String),
    Code(String, String),
    Bool(bool),
}

fn scalars(v: &Value, out: &mut Vec<V>) {
    match v {
        Value::Integer(i) => out.push(V::Num(Decimal::from(*i))),
        Value::Decimal(d) => out.push(V::Num(*d)),
        Value::Date(d) => out.push(V::Time(i64::from(d.days()) * DAY_US)),
        Value::DateTime(t) => out.push(V::Time(t.unix_micros())),
        Value::Text(s) => out.push(V::Text(s.clone())),
        Value::Code(c) => out.push(V::Code(c.system.clone(), c.code.clone())),
        Value::Boolean(b) => out.push(V::Bool(*b)),
        Value::List(items) => items.iter().for_each(|x| scalars(x, out)),
        _ => {}
    }
}

fn of_literal(l: &Literal) -> V {
    match l {
        Literal::Number(n) => V::Num(*n),
        Literal::Date(d) => V::Time(i64::from(d.days()) * DAY_US),
        Literal::DateTime(t) => V::Time(t.unix_micros()),
        Literal::Text(s) => V::Text(s.clone()),
        Literal::Code(s, c) => V::Code(s.clone(), c.clone()),
        Literal::Boolean(b) => V::Bool(*b),
    }
}

/// Stored value against literal: `None` when they are not comparable.
fn compare(stored: &V, lit: &V) -> Option<Ordering> {
    Some(match (stored, lit) {
        (V::Num(a), V::Num(b)) => a.cmp(b),
        (V::Time(a), V::Time(b)) => a.cmp(b),
        (V::Text(a), V::Text(b)) => a.cmp(b),
        (V::Code(s, c), V::Code(t, d)) => (s, c).cmp(&(t, d)),
        (V::Code(_, c), V::Text(t)) => c.cmp(t),
        (V::Bool(a), V::Bool(b)) => a.cmp(b),
        _ => return None,
    })
}

fn holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

/// One document as one session sees it.
struct Seen<'a> {
    full: &'a Document,
    /// The patient identifier shown to the session.
    patient: &'a str,
}

fn field_values(d: &Document, f: &str) -> Vec<V> {
    let mut out = Vec::new();
    if let Some(v) = d.get(f) {
        scalars(v, &mut out);
    }
    out
}

fn eval(e: &Expr, d: &Seen<'_>) -> bool {
    match e {
        Expr::And(a, b) => eval(a, d) && eval(b, d),
        Expr::Or(a, b) => eval(a, d) || eval(b, d),
        Expr::Not(a) => !eval(a, d),
        Expr::In(f, ls) => ls.iter().any(|l| eval(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), d)),
        Expr::Cmp(f, CmpOp::Ne, l) if !matches!(f.as_str(), "created" | "updated") => {
            !eval(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), d)
        }
        Expr::Cmp(f, op, l) => match f.as_str() {
            "kind" => matches!(l, Literal::Text(k) if k == d.full.kind.as_str()),
            "patient" => matches!(l, Literal::Text(p) if p == d.patient),
            "created" | "updated" => {
                let t = if f == "created" { d.full.created } else { d.full.updated }.unix_micros();
                compare(&V::Time(t), &of_literal(l)).is_some_and(|o| holds(*op, o))
            }
            _ => {
                let lit = of_literal(l);
                field_values(d.full, f).iter().any(|v| compare(v, &lit).is_some_and(|o| holds(*op, o)))
            }
        },
    }
}

fn sort_key(field: &str, d: &Seen<'_>) -> Option<V> {
    match field {
        "kind" => Some(V::Text(d.full.kind.to_string())),
        "patient" => Some(V::Text(d.patient.to_string())),
        "id" => Some(V::Text(d.full.id.to_string())),
        "created" => Some(V::Time(d.full.created.unix_micros())),
        "updated" => Some(V::Time(d.full.updated.unix_micros())),
        f => field_values(d.full, f).into_iter().min_by(|a, b| compare(a, b).expect("one type per field")),
    }
}

/// Every field a query filters or sorts on that is a document field (not an attribute).
fn touched(q: &Query) -> BTreeSet<String> {
    fn walk(e: &Expr, out: &mut BTreeSet<String>) {
        match e {
            Expr::Cmp(f, _, _) | Expr::In(f, _) => {
                out.insert(f.clone());
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Expr::Not(a) => walk(a, out),
        }
    }
    let mut out = BTreeSet::new();
    if let Some(e) = &q.filter {
        walk(e, &mut out);
    }
    if let Some(Order { field, .. }) = &q.order {
        out.insert(field.clone());
    }
    out.retain(|f| !["kind", "patient", "id", "created", "updated"].contains(&f.as_str()));
    out
}

/// Kinds a query is pinned to by top-level `kind = K` / `kind in (...)` conjuncts.
fn pinned(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::Cmp(f, CmpOp::Eq, Literal::Text(k)) if f == "kind" => Some([k.clone()].into()),
        Expr::In(f, ls) if f == "kind" => {
            ls.iter().map(|l| if let Literal::Text(k) = l { Some(k.clone()) } else { None }).collect()
        }
        Expr::And(a, b) => match (pinned(a), pinned(b)) {
            (Some(x), Some(y)) => Some(x.intersection(&y).cloned().collect()),
            (x, None) | (None, x) => x,
        },
        _ => None,
    }
}

/// Whether the session must be refused: some touched field is not readable by the
/// role in any kind in scope.
fn refused(role: &RoleModel, q: &Query) -> bool {
    let schema = Schema::hospital_default();
    let scope: Vec<String> = match q.filter.as_ref().and_then(pinned) {
        Some(k) => k.into_iter().collect(),
        None => schema.kinds.keys().cloned().chain([String::new()]).collect(),
    };
    touched(q).iter().any(|f| {
        !scope.iter().any(|k| {
            let label =
                Kind::new(k).map(|kind| schema.label_of(&kind, f)).unwrap_or_else(|_| schema.fallback_label.clone());
            !role.excluded_kinds.contains(&k.as_str()) && role.labels.contains(&label)
        })
    })
}

/// The expected answer: the ids, in order.
fn expected(q: &Query, stored: &[Stored], views: &BTreeMap<DocumentId, Document>) -> Vec<DocumentId> {
    let fields = touched(q);
    let mut hits: Vec<(Option<V>, &Document, &str)> = Vec::new();
    for s in stored {
        let Some(view) = views.get(&s.full.id) else { continue }; // `get` was denied
        let eligible = fields.iter().all(|f| {
            if view.redacted.contains_key(f) {
                false
            } else if s.full.fields.contains_key(f) {
                true
            } else {
                view.redacted.is_empty()
            }
        });
        if !eligible {
            continue;
        }
        let seen = Seen { full: &s.full, patient: &view.patient };
        if q.filter.as_ref().is_some_and(|e| !eval(e, &seen)) {
            continue;
        }
        let key = q.order.as_ref().and_then(|o| sort_key(&o.field, &seen));
        hits.push((key, &s.full, &view.patient));
    }
    let desc = q.order.as_ref().is_some_and(|o| o.descending);
    hits.sort_by(|a, b| {
        let k = match (&a.0, &b.0) {
            (Some(x), Some(y)) => {
                let o = compare(x, y).expect("one type per field");
                if desc { o.reverse() } else { o }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        k.then(a.1.created.unix_micros().cmp(&b.1.created.unix_micros())).then(a.1.id.0.cmp(&b.1.id.0))
    });
    hits.into_iter().map(|h| h.1.id).collect()
}

// ---------------------------------------------------------------------------------
// Running a query through the engine, all pages

enum Answer {
    Denied,
    Pages(Vec<(usize, Vec<Document>, bool)>),
}

fn run(s: &Session, q: &Query, as_text: bool) -> Result<Answer, String> {
    let text = q.to_string();
    if as_text {
        let back = chartvault::query::parse(&text).map_err(|e| format!("{text:?} does not parse back: {e}"))?;
        if &back != q {
            return Err(format!("{text:?} parses back to a different query: {back:?} vs {q:?}"));
        }
    }
    let limit = q.limit.unwrap_or(100);
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let r = match (&cursor, as_text) {
            (None, true) => s.query_str(&text),
            (None, false) => s.query(q),
            (Some(c), _) => s.query(&Query { cursor: Some(c.clone()), ..q.clone() }),
        };
        let r = match r {
            Ok(r) => r,
            Err(Error::Denied(_)) if pages.is_empty() => return Ok(Answer::Denied),
            Err(e) => return Err(format!("{text}: {e}")),
        };
        if r.documents.len() > limit {
            return Err(format!("{text}: a page of {} documents with limit {limit}", r.documents.len()));
        }
        let more = r.next_cursor.is_some();
        pages.push((r.total, r.documents, more));
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        if pages.len() > 200 {
            return Err(format!("{text}: runaway pagination"));
        }
    }
    Ok(Answer::Pages(pages))
}

fn check_case(docs: &[DocSpec], queries: &[QSpec]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let opts = VaultOptions { initial_policy: policy(), checkpoint_every: 0, ..VaultOptions::default() };
    let vault = Vault::create(&dir.path().join("b.cv"), VaultKey::Raw(&SecretKey::random()), opts).unwrap();
    let sessions: Vec<(&str, Session)> =
        principals().into_iter().map(|(n, p)| (n, vault.session(p).unwrap())).collect();
    let loader = &sessions[0].1;
    let mut b = loader.batch().unwrap();
    let mut ids = Vec::new();
    for d in docs {
        let mut nd = NewDocument::new(PATIENTS[d.patient], KINDS[d.kind]).unwrap();
        for (f, v, l) in &d.fields {
            nd = nd.with_labeled(f, v.clone(), l.iter().cloned().collect());
        }
        ids.push(b.put(&nd).unwrap());
    }
    b.commit().unwrap();
    // Everything, decrypted by the full-access reader.
    let mut stored: Vec<Stored> = ids.iter().map(|id| Stored { full: loader.get(id).unwrap() }).collect();
    for s in &stored {
        prop_assert!(s.full.redacted.is_empty(), "the full-access reader must see everything");
    }
    stored.sort_by_key(|s| s.full.created.unix_micros());
    // What each session can `get`.
    let mut views: BTreeMap<&str, BTreeMap<DocumentId, Document>> = BTreeMap::new();
    for (name, s) in &sessions {
        let v = views.entry(*name).or_default();
        for st in &stored {
            match s.get(&st.full.id) {
                Ok(d) => {
                    v.insert(d.id, d);
                }
                Err(Error::Denied(_)) => {}
                Err(e) => return Err(TestCaseError::fail(format!("{name}: get: {e}"))),
            }
        }
    }
    let mut pseudonyms = BTreeMap::new();
    for (id, d) in &views["researcher"] {
        let full = &stored.iter().find(|s| s.full.id == *id).unwrap().full;
        let i = PATIENTS.iter().position(|p| *p == full.patient).unwrap();
        pseudonyms.insert(i, d.patient.clone());
    }
    let ctx =
        Ctx { stored: &stored, created: stored.iter().map(|s| s.full.created.unix_micros()).collect(), pseudonyms };
    for spec in queries {
        let q = ctx.query(spec);
        for (name, s) in &sessions {
            let role = role_model(name);
            let answer = run(s, &q, spec.as_text).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            let want_refusal = refused(&role, &q);
            let pages = match answer {
                Answer::Denied => {
                    prop_assert!(
                        want_refusal,
                        "{}: {} was refused, but the session can read every field it touches",
                        name,
                        q
                    );
                    continue;
                }
                Answer::Pages(p) => p,
            };
            prop_assert!(!want_refusal, "{}: {} was answered, but touches a field the session cannot read", name, q);
            let want = expected(&q, ctx.stored, &views[name]);
            let got: Vec<DocumentId> = pages.iter().flat_map(|p| p.1.iter().map(|d| d.id)).collect();
            prop_assert_eq!(&got, &want, "{}: {} (as text: {})", name, q, spec.as_text);
            for (total, page, more) in &pages {
                prop_assert_eq!(*total, want.len(), "{}: {}: total", name, q);
                // Pages are full except the last, and documents come redacted as for `get`.
                if *more {
                    prop_assert_eq!(page.len(), q.limit.unwrap_or(100), "{}: {}: short page before the end", name, q);
                }
                for d in page {
                    prop_assert_eq!(Some(d), views[name].get(&d.id), "{}: {}: a result differs from `get`", name, q);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, max_shrink_iters: 400, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_brute_force(
        docs in prop::collection::vec(doc_spec(), 3..16),
        queries in prop::collection::vec(query_spec(), 4..9),
    ) {
        check_case(&docs, &queries)?;
    }
}

/// Fixed cases for the semantics the generator might rarely hit.
#[test]
fn fixed_semantics_cases() {
    let obs = |fields: Vec<(&'static str, Value, Option<Label>)>| DocSpec { patient: 0, kind: 0, fields };
    let docs = vec![
        // A date and a datetime at that midnight (UTC) are the same instant.
        obs(vec![("effective", date_value(1), None), ("value", Value::Integer(3), None)]),
        obs(vec![("effective", datetime_value(1, 0, 0), None), ("value", Value::Decimal(Decimal::new(30, 1)), None)]),
        // 05:00+05:00 is midnight UTC too; 00:00-05:00 is 05:00 UTC.
        obs(vec![
            ("effective", datetime_value(1, 5, 1), None),
            ("code", Value::from(Coding::new("snomed", "A1", None)), None),
        ]),
        obs(vec![
            ("effective", datetime_value(1, 0, 2), None),
            ("code", Value::from(Coding::new("loinc", "A1", None)), None),
        ]),
        // Lists match existentially.
        obs(vec![(
            "code",
            Value::List(vec![
                Value::from(Coding::new("loinc", "B2", None)),
                Value::from(Coding::new("icd10cm", "C3", None)),
            ]),
            None,
        )]),
        obs(vec![(
            "value",
            Value::List(vec![Value::Integer(-1), Value::Decimal(Decimal::new(55, 1))]),
            Some(Label::hiv_sti()),
        )]),
        // Other kinds and patients, for refusals and pseudonyms.
        DocSpec {
            patient: 1,
            kind: 2,
            fields: vec![("value", Value::Integer(4), None), ("status", Value::Text("final".into()), None)],
        },
        DocSpec {
            patient: 2,
            kind: 3,
            fields: vec![
                ("value", Value::Integer(9), None),
                ("code", Value::from(Coding::new("loinc", "A1", None)), None),
            ],
        },
    ];
    let lit = |l: Literal| QLit::Lit(l);
    let cmp = |f: &'static str, op: CmpOp, l: Literal| Some(QExpr::Cmp(f, op, lit(l)));
    let day1 = Literal::Date(Date::from_days(base_day() + 1).unwrap());
    let spec = |filter: Option<QExpr>, order: Option<(&'static str, bool)>| QSpec {
        filter,
        order,
        limit: Some(2),
        as_text: true,
    };
    let queries = vec![
        spec(cmp("effective", CmpOp::Eq, day1.clone()), Some(("effective", false))),
        spec(cmp("effective", CmpOp::Gt, day1.clone()), None),
        spec(cmp("effective", CmpOp::Ne, day1), Some(("value", true))),
        spec(cmp("value", CmpOp::Eq, Literal::Number(3.into())), None),
        spec(cmp("value", CmpOp::Gt, Literal::Number(Decimal::new(5, 0))), Some(("value", false))),
        spec(cmp("code", CmpOp::Eq, Literal::Text("A1".into())), Some(("code", true))),
        spec(cmp("code", CmpOp::Eq, Literal::Code("http://hl7.org/fhir/sid/icd-10-cm".into(), "C3".into())), None),
        spec(cmp("code", CmpOp::Ne, Literal::Text("B2".into())), Some(("code", false))),
        spec(Some(QExpr::In("value", vec![lit(Literal::Number((-1).into())), lit(Literal::Boolean(true))])), None),
        spec(cmp("status", CmpOp::Ne, Literal::Text("final".into())), Some(("patient", true))),
        spec(None, Some(("effective", true))),
        // Pinned kinds: refused where the role cannot read the field in that kind
        // (researcher and billing: restricted note values; everyone but billing and
        // the loader: financial claim values; nurse: any psychotherapy-note field).
        spec(
            Some(QExpr::And(
                Box::new(QExpr::Cmp("kind", CmpOp::Eq, lit(Literal::Text("ClinicalNote".into())))),
                Box::new(QExpr::Cmp("value", CmpOp::Gt, lit(Literal::Number(1.into())))),
            )),
            None,
        ),
        spec(Some(QExpr::Cmp("kind", CmpOp::Eq, lit(Literal::Text("Claim".into())))), Some(("value", true))),
        spec(
            Some(QExpr::And(
                Box::new(QExpr::In(
                    "kind",
                    vec![lit(Literal::Text("Claim".into())), lit(Literal::Text("Observation".into()))],
                )),
                Box::new(QExpr::Cmp("value", CmpOp::Ge, lit(Literal::Number(0.into())))),
            )),
            None,
        ),
        spec(
            Some(QExpr::And(
                Box::new(QExpr::Cmp("kind", CmpOp::Eq, lit(Literal::Text("PsychotherapyNote".into())))),
                Box::new(QExpr::Cmp("status", CmpOp::Ne, lit(Literal::Text("x".into())))),
            )),
            None,
        ),
        // Patients by identifier and by pseudonym.
        spec(Some(QExpr::Cmp("patient", CmpOp::Eq, QLit::Patient(1, false))), Some(("patient", false))),
        spec(Some(QExpr::Cmp("patient", CmpOp::Eq, QLit::Patient(2, true))), None),
        spec(
            Some(QExpr::In("patient", vec![QLit::Patient(0, true), QLit::Patient(1, false)])),
            Some(("patient", true)),
        ),
    ];
    check_case(&docs, &queries).unwrap();
}
