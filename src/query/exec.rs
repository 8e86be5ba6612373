//! Query execution inside a session.
//!
//! 1. The session must hold a `query` grant, and every field the query filters or
//!    sorts on must be readable by it in at least one kind in scope; otherwise the
//!    query is refused (so a hidden field can never be used as an oracle).
//! 2. Candidates come from the in-memory indexes (patient, kind, field values).
//! 3. Each candidate is first checked for eligibility — the policy must let the
//!    session query and read that document and every field the query touches in it —
//!    and only then evaluated. Documents the session may not see therefore never
//!    influence results, counts, totals or pages. A document with no indexed value
//!    for a touched field (the field is absent, or holds a value the index does not
//!    keep: a group, an attachment, long text, an empty list) is eligible only if
//!    the session may read all of it, since the index cannot tell those apart. For a
//!    de-identified session, `patient` is the pseudonym it is shown.
//! 4. Results are sorted (by the order field, then creation time and id), paged with
//!    a keyset cursor that stays correct while the writer appends, and only the page
//!    is decrypted, with the usual redaction. Steps 3 and 4 run on every core; when
//!    every candidate fits on the first page, each thread reads its hits as soon as it
//!    finds them (one pass under the locks already held), and the page is sorted after.
//! 5. The query and the documents it returned are audited.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::ast::{ATTRIBUTE_FIELDS, CmpOp, Comparable, Expr, Literal, Query};
use crate::access::{Decision, Operation, Request};
use crate::audit::{Action, Outcome};
use crate::crypto::aead;
use crate::error::{Error, Result};
use crate::format::body::IndexKey;
use crate::model::{Document, DocumentId, Kind, Label};
use crate::store::{Catalog, DocEntry};
use crate::vault::Session;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 10_000;

/// One page of results.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The documents of this page (latest versions, redacted as for `get`).
    pub documents: Vec<Document>,
    /// How many visible documents match in all.
    pub total: usize,
    /// Pass to [`crate::query::QueryBuilder::after`] (or `Query::cursor`) for the next page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Position {
    /// Sort value (None sorts after every value in ascending order).
    key: Option<Comparable>,
    created_us: i64,
    id: [u8; 16],
}

/// A matching candidate: its position in the order, its id, and the document if it
/// was read at once (with whether break-glass allowed the read).
type Hit = (Position, DocumentId, Option<Result<(Document, bool)>>);

#[derive(Serialize, Deserialize)]
struct CursorData {
    query: [u8; 32],
    after: Position,
}

fn query_fingerprint(q: &Query) -> [u8; 32] {
    let shape = Query { cursor: None, limit: None, ..q.clone() };
    *blake3::hash(shape.to_string().as_bytes()).as_bytes()
}

impl Session {
    /// Runs a query written in the text language.
    ///
    /// ```
    /// # use chartvault::*; use chartvault::access::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let v = Vault::create(&dir.path().join("q.cv"), VaultKey::Raw(&SecretKey::random()), VaultOptions::default())?;
    /// let dr = v.session(Principal::new("dr", Role::physician(), "h", Purpose::Treat).with_care_team(["MRN-7"]))?;
    /// dr.put(&NewDocument::new("MRN-7", "Observation")?
    ///     .with("code", Value::from(Coding::new("loinc", "4548-4", None)))
    ///     .with("effective", Value::Date(Date::parse("2024-03-01")?)))?;
    /// let page = dr.query_str("kind = Observation and code = loinc:4548-4 and effective >= 2024-01-01")?;
    /// assert_eq!(page.total, 1);
    /// # Ok::<(), chartvault::Error>(())
    /// ```
    pub fn query_str(&self, q: &str) -> Result<QueryResult> {
        self.query(&super::parse(q)?)
    }

    /// Runs a query.
    pub fn query(&self, q: &Query) -> Result<QueryResult> {
        self.touch()?;
        self.check_auditable()?;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::InvalidQuery(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let shown = q.to_string();
        let mut fields = Vec::new();
        if let Some(f) = &q.filter {
            f.fields(&mut fields);
        }
        if let Some(o) = &q.order {
            fields.push(o.field.clone());
        }
        fields.sort();
        fields.dedup();
        let value_fields: Vec<String> =
            fields.iter().filter(|f| !ATTRIBUTE_FIELDS.contains(&f.as_str())).cloned().collect();
        if let Some(f) = &q.filter {
            check_attribute_ops(f)?;
        }
        let after = match &q.cursor {
            Some(c) => Some(self.open_cursor(c, q)?),
            None => None,
        };

        // 1. Grants and field readability, refused up front.
        let pinned = q.filter.as_ref().and_then(pinned_kinds);
        if let Err(reason) = self.check_query_grant(&value_fields, pinned.as_ref()) {
            return Err(self.deny(Action::Query, None, Vec::new(), Vec::new(), reason));
        }

        let st = self.inner.store.read_state_for_query()?;
        let cat = &st.catalog;
        let ring = &st.keyring;
        // 2. Candidates from indexes.
        // A patient is named by its identifier or, for de-identified sessions, by the
        // pseudonym they are shown (evaluation below decides which one matches).
        let slot_of = |p: &str| {
            ring.slot_of(p).or_else(|| ring.patients().find(|(name, _)| self.pseudonym(name) == p).map(|(_, s)| s))
        };
        let candidates: Vec<DocumentId> = match q.filter.as_ref().and_then(|e| plan(e, cat, &slot_of)) {
            Some(list) => list,
            None => cat.docs.keys().copied().collect(),
        };
        // 3. Eligibility, then evaluation, on every core. One set of decision inputs
        // for every candidate (the policy and rules locks are taken once, not per
        // decision), and one reused label buffer per thread (builtin labels clone
        // without allocating).
        let decisions = self.decision_inputs();
        // Derived on first use: only de-identified sessions need it.
        let pseudonym_key = std::sync::OnceLock::new();
        // A candidate that matches, with its position in the order and, if `read`, the
        // document read at once under the read decision just made (no second catalog
        // lookup or decision).
        let hit = |id: &DocumentId, labels: &mut SmallVec<[Label; 8]>, read: bool| -> Option<Hit> {
            let e = cat.docs.get(id)?;
            let patient = ring.patient(e.patient_slot)?;
            labels.clear();
            for f in &value_fields {
                if !e.terms.labels_of(f, |ls| labels.extend(ls.iter().cloned())) {
                    // Absent, or present with a value the index does not hold: only a
                    // document the session may read in full is eligible, so the shape
                    // of a hidden value can never decide a match.
                    labels.extend(e.labels.iter().cloned());
                }
            }
            labels.sort_unstable();
            labels.dedup();
            let pdp = decisions.pdp(Some(patient));
            let kind = Some(e.kind.as_str());
            if !pdp
                .decide(&Request { op: Operation::Query, patient: Some(patient), kind, doc: None }, labels)
                .is_permit()
            {
                return None;
            }
            // The read decision names the document: document-specific rules (self-pay)
            // need its id, and a permit with it implies the permit without it.
            let read_request = Request { op: Operation::Read, patient: Some(patient), kind, doc: Some(*id) };
            let read_decision = pdp.prepare(&read_request);
            let (deidentify, break_glass) = match read_decision.decide(&[]) {
                Decision::Permit { deidentify, break_glass } => (deidentify, break_glass),
                Decision::Deny(_) => return None,
            };
            // A de-identified session filters and sorts on the pseudonym it is shown,
            // never on the identifier it is not.
            let pseudonym;
            let shown: &str = if deidentify {
                pseudonym = Session::pseudonym_with(pseudonym_key.get_or_init(|| self.pseudonym_key()), patient);
                &pseudonym
            } else {
                patient
            };
            if let Some(f) = &q.filter
                && !eval(f, id, e, shown)
            {
                return None;
            }
            let key = q.order.as_ref().and_then(|o| sort_value(&o.field, id, e, shown));
            let doc = read.then(|| {
                self.read_permitted(Some(&st), e.latest().offset, &read_decision, deidentify).map(|d| (d, break_glass))
            });
            Some((Position { key, created_us: e.created_us, id: id.0 }, *id, doc))
        };
        // Few candidates are checked (and read) on this thread alone: a wake-up of the
        // pool would cost more than it saves.
        let threads = if candidates.len() < crate::vault::session::PARALLEL_READ_MIN {
            1
        } else {
            crate::util::cores().min(crate::vault::session::READ_THREADS)
        };
        let desc = q.order.as_ref().is_some_and(|o| o.descending);
        let mut documents = Vec::new();
        let mut any_break_glass = false;
        let mut keep = |r: Result<(Document, bool)>| -> Result<()> {
            match r {
                Ok((d, bg)) => {
                    any_break_glass |= bg;
                    documents.push(d);
                    Ok(())
                }
                Err(Error::Denied(_)) | Err(Error::NotFound { .. }) | Err(Error::Erased) => Ok(()),
                Err(e) => Err(e),
            }
        };
        let (total, next_cursor) = if after.is_none() && candidates.len() <= limit {
            // Every hit is on the page: each candidate is checked and, if it is a hit,
            // read at once by the same thread, under the state and decisions already
            // held (one pass, no second catalog lookup or lock per document).
            let mut read: Vec<(Position, Result<(Document, bool)>)> =
                crate::util::split_map(&candidates, threads, |part| {
                    let mut labels = SmallVec::new();
                    part.iter()
                        .filter_map(|id| hit(id, &mut labels, true))
                        .filter_map(|(pos, _, doc)| Some((pos, doc?)))
                        .collect()
                });
            read.sort_by(|a, b| cmp_pos(&a.0, &b.0, desc));
            let total = read.len();
            drop(decisions);
            drop(st);
            for (_, r) in read {
                keep(r)?;
            }
            (total, None)
        } else {
            let mut hits: Vec<(Position, DocumentId)> = crate::util::split_map(&candidates, threads, |part| {
                let mut labels = SmallVec::new();
                part.iter().filter_map(|id| hit(id, &mut labels, false)).map(|(pos, id, _)| (pos, id)).collect()
            });
            drop(decisions);
            drop(st);
            // 4. Sort and page.
            hits.sort_by(|a, b| cmp_pos(&a.0, &b.0, desc));
            let total = hits.len();
            let start = match &after {
                Some(p) => hits.partition_point(|h| cmp_pos(&h.0, p, desc) != std::cmp::Ordering::Greater),
                None => 0,
            };
            let page: Vec<&(Position, DocumentId)> = hits[start..].iter().take(limit).collect();
            let next_cursor =
                if start + page.len() < total { page.last().map(|(p, _)| self.seal_cursor(q, p)) } else { None };
            let ids: Vec<DocumentId> = page.iter().map(|(_, id)| *id).collect();
            for r in self.read_docs(&ids, Operation::Read) {
                keep(r)?;
            }
            (total, next_cursor)
        };
        // 5. Audit.
        let patient = q.filter.as_ref().and_then(pinned_patient);
        self.inner.audit(
            self.entry(Action::Query, Outcome::Success)
                .patient(patient.as_deref())
                .documents(documents.iter().map(|d| d.id).collect())
                .break_glass(any_break_glass)
                .detail(shown.chars().take(1000).collect::<String>()),
        )?;
        Ok(QueryResult { documents, total, next_cursor })
    }

    fn check_query_grant(
        &self,
        fields: &[String],
        pinned: Option<&BTreeSet<String>>,
    ) -> std::result::Result<(), String> {
        let policy = self.inner.policy.read().unwrap_or_else(|e| e.into_inner());
        let pr = &self.principal;
        if pr.purpose == crate::access::Purpose::EmergencyTreat && self.break_glass_grant().is_none() {
            return Err("emergency access (ETREAT) needs an active break-glass request for a patient".into());
        }
        let purposes: Vec<_> = {
            let mut v = vec![pr.purpose];
            if self.break_glass_grant().is_some() {
                v.push(crate::access::Purpose::EmergencyTreat);
            }
            v
        };
        let grants: Vec<_> = policy
            .grants
            .iter()
            .filter(|g| {
                g.roles.iter().any(|r| pr.roles.contains(r))
                    && purposes.iter().any(|p| g.purposes.contains(p))
                    && g.operations.contains(&Operation::Query)
            })
            .collect();
        if grants.is_empty() {
            return Err(format!("no grant lets this role run queries with purpose {}", pr.purpose));
        }
        let schema = self.inner.store.schema();
        let kinds: Vec<String> = match pinned {
            Some(k) => k.iter().cloned().collect(),
            None => {
                let mut k: Vec<String> = schema.kinds.keys().cloned().collect();
                k.push(String::new());
                k
            }
        };
        // A grant covers a kind unless it lists kinds without it or excludes it.
        let admits = |g: &crate::access::Grant, k: &str| {
            g.kinds.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k)) && !g.exclude_kinds.iter().any(|x| x == k)
        };
        for f in fields {
            let readable = kinds.iter().any(|k| {
                let label = match Kind::new(k) {
                    Ok(kind) => schema.label_of(&kind, f),
                    Err(_) => schema.fallback_label.clone(),
                };
                grants.iter().any(|g| admits(g, k) && g.labels.contains(&label))
            });
            if !readable {
                return Err(format!(
                    "this session may not filter or sort on field {f:?}: its label is not readable here"
                ));
            }
        }
        Ok(())
    }

    fn seal_cursor(&self, q: &Query, p: &Position) -> String {
        let data = CursorData { query: query_fingerprint(q), after: p.clone() };
        let pt = postcard::to_stdvec(&data).unwrap_or_default();
        let mut out = Vec::new();
        aead::seal(&self.cursor_key(), b"chartvault cursor v1", &pt, &mut out);
        crate::util::hex(&out)
    }

    fn open_cursor(&self, c: &str, q: &Query) -> Result<Position> {
        let bad = || Error::InvalidQuery("the cursor is invalid, expired or belongs to another query".into());
        if c.len() > 4096 || !c.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes: Option<Vec<u8>> =
            (0..c.len()).step_by(2).map(|i| crate::util::unhex::<1>(c.get(i..i + 2)?).map(|b| b[0])).collect();
        let bytes = bytes.ok_or_else(bad)?;
        let pt = aead::open(&self.cursor_key(), b"chartvault cursor v1", &bytes).map_err(|_| bad())?;
        let d: CursorData = postcard::from_bytes(&pt).map_err(|_| bad())?;
        if d.query != query_fingerprint(q) {
            return Err(bad());
        }
        Ok(d.after)
    }

    fn cursor_key(&self) -> crate::SecretKey {
        self.inner.store.keys().system.derive("chartvault 2026 query cursor v1", &[self.principal.user.as_bytes()])
    }
}

fn cmp_pos(a: &Position, b: &Position, desc: bool) -> std::cmp::Ordering {
    let k = match (&a.key, &b.key) {
        (Some(x), Some(y)) => {
            if desc {
                y.cmp(x)
            } else {
                x.cmp(y)
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    };
    k.then(a.created_us.cmp(&b.created_us)).then(a.id.cmp(&b.id))
}

fn check_attribute_ops(e: &Expr) -> Result<()> {
    match e {
        Expr::Cmp(f, op, _)
            if matches!(f.as_str(), "kind" | "patient" | "id") && !matches!(op, CmpOp::Eq | CmpOp::Ne) =>
        {
            Err(Error::InvalidQuery(format!("{f} can only be compared with = , != or in")))
        }
        Expr::Cmp(f, _, l)
            if matches!(f.as_str(), "created" | "updated") && !matches!(l, Literal::Date(_) | Literal::DateTime(_)) =>
        {
            Err(Error::InvalidQuery(format!("{f} is compared with a date or datetime")))
        }
        Expr::And(a, b) | Expr::Or(a, b) => check_attribute_ops(a).and(check_attribute_ops(b)),
        Expr::Not(a) => check_attribute_ops(a),
        _ => Ok(()),
    }
}

fn text_of(l: &Literal) -> Option<&str> {
    match l {
        Literal::Text(s) => Some(s),
        _ => None,
    }
}

/// Kinds the filter pins with a top-level `kind = K` / `kind in (...)` conjunct.
fn pinned_kinds(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::Cmp(f, CmpOp::Eq, l) if f == "kind" => text_of(l).map(|k| [k.to_string()].into()),
        Expr::In(f, ls) if f == "kind" => ls.iter().map(|l| text_of(l).map(str::to_string)).collect(),
        Expr::And(a, b) => match (pinned_kinds(a), pinned_kinds(b)) {
            (Some(x), Some(y)) => Some(x.intersection(&y).cloned().collect()),
            (x, None) | (None, x) => x,
        },
        _ => None,
    }
}

fn pinned_patient(e: &Expr) -> Option<String> {
    match e {
        Expr::Cmp(f, CmpOp::Eq, l) if f == "patient" => text_of(l).map(str::to_string),
        Expr::And(a, b) => pinned_patient(a).or_else(|| pinned_patient(b)),
        _ => None,
    }
}

fn attr_matches(field: &str, id: &DocumentId, e: &DocEntry, patient: &str, op: CmpOp, l: &Literal) -> bool {
    let eq = |b: bool| if op == CmpOp::Ne { !b } else { b };
    match field {
        "kind" => eq(text_of(l) == Some(e.kind.as_str())),
        "patient" => eq(text_of(l) == Some(patient)),
        "id" => eq(text_of(l).and_then(|s| DocumentId::parse(s).ok()) == Some(*id)),
        "created" => Comparable::Time(e.created_us).matches(op, &Comparable::of_literal(l)),
        _ => Comparable::Time(e.latest().updated_us).matches(op, &Comparable::of_literal(l)),
    }
}

/// Evaluates the filter on one catalog entry (index terms only: no decryption).
fn eval(x: &Expr, id: &DocumentId, e: &DocEntry, patient: &str) -> bool {
    match x {
        Expr::Cmp(f, op, l) if ATTRIBUTE_FIELDS.contains(&f.as_str()) => attr_matches(f, id, e, patient, *op, l),
        Expr::Cmp(f, CmpOp::Ne, l) => !eval(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), id, e, patient),
        Expr::Cmp(f, op, l) => {
            let lit = Comparable::of_literal(l);
            e.terms.any_value_of(f, |k| Comparable::of_key(k).matches(*op, &lit))
        }
        Expr::In(f, ls) => ls.iter().any(|l| eval(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), id, e, patient)),
        Expr::And(a, b) => eval(a, id, e, patient) && eval(b, id, e, patient),
        Expr::Or(a, b) => eval(a, id, e, patient) || eval(b, id, e, patient),
        Expr::Not(a) => !eval(a, id, e, patient),
    }
}

fn sort_value(field: &str, id: &DocumentId, e: &DocEntry, patient: &str) -> Option<Comparable> {
    match field {
        "kind" => Some(Comparable::Text(e.kind.to_string())),
        "patient" => Some(Comparable::Text(patient.to_string())),
        "id" => Some(Comparable::Text(id.to_string())),
        "created" => Some(Comparable::Time(e.created_us)),
        "updated" => Some(Comparable::Time(e.latest().updated_us)),
        f => e.terms.iter().filter(|t| t.field == f).map(|t| Comparable::of_key(&t.key)).min(),
    }
}

/// A sorted, duplicate-free candidate list.
type Candidates = Vec<DocumentId>;

fn sorted(mut v: Vec<DocumentId>) -> Candidates {
    v.sort_unstable();
    v.dedup();
    v
}

/// Intersection of two sorted lists (the smaller drives binary searches in the larger).
fn intersect(a: Candidates, b: Candidates) -> Candidates {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.into_iter().filter(|x| large.binary_search(x).is_ok()).collect()
}

/// A cheap upper estimate of how many candidates planning `x` yields (no
/// materialization); `usize::MAX` for range scans and anything unplannable.
fn estimate(x: &Expr, cat: &Catalog, slot_of: &dyn Fn(&str) -> Option<u32>) -> usize {
    match x {
        Expr::Cmp(f, CmpOp::Eq, l) if f == "patient" => {
            text_of(l).and_then(slot_of).and_then(|s| cat.by_patient.get(&s)).map_or(0, Vec::len)
        }
        Expr::Cmp(f, CmpOp::Eq, l) if f == "kind" => {
            text_of(l).and_then(|k| Kind::new(k).ok()).and_then(|k| cat.by_kind.get(&k)).map_or(0, Vec::len)
        }
        Expr::Cmp(f, CmpOp::Eq, _) if f == "id" => 1,
        Expr::Cmp(f, CmpOp::Eq, Literal::Code(s, c)) => {
            cat.values().get(f).and_then(|m| m.get(&IndexKey::Code(s.clone(), c.clone()))).map_or(0, Vec::len)
        }
        Expr::In(f, ls) => ls
            .iter()
            .map(|l| estimate(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), cat, slot_of))
            .fold(0usize, usize::saturating_add),
        _ => usize::MAX,
    }
}

/// Candidate documents from the indexes; `None` means "scan everything".
///
/// Conjunctions plan their point lookups first; once a conjunct yields at most
/// `SMALL` candidates, range conjuncts are not materialized at all (the filter
/// evaluates them on the few candidates left).
fn plan(x: &Expr, cat: &Catalog, slot_of: &dyn Fn(&str) -> Option<u32>) -> Option<Candidates> {
    const SMALL: usize = 4096;
    match x {
        Expr::Cmp(f, CmpOp::Eq, l) if f == "patient" => {
            Some(sorted(text_of(l).and_then(slot_of).and_then(|s| cat.by_patient.get(&s)).cloned().unwrap_or_default()))
        }
        Expr::Cmp(f, CmpOp::Eq, l) if f == "kind" => Some(sorted(
            text_of(l).and_then(|k| Kind::new(k).ok()).and_then(|k| cat.by_kind.get(&k)).cloned().unwrap_or_default(),
        )),
        Expr::Cmp(f, CmpOp::Eq, l) if f == "id" => Some(
            text_of(l)
                .and_then(|s| DocumentId::parse(s).ok())
                .filter(|id| cat.docs.contains_key(id))
                .into_iter()
                .collect(),
        ),
        Expr::Cmp(f, op, l) if *op != CmpOp::Ne && !ATTRIBUTE_FIELDS.contains(&f.as_str()) => {
            let Some(m) = cat.values().get(f) else { return Some(Vec::new()) };
            let lit = Comparable::of_literal(l);
            let mut out = Vec::new();
            let take = |out: &mut Vec<DocumentId>, range: &mut dyn Iterator<Item = (&IndexKey, &Vec<DocumentId>)>| {
                for (k, ids) in range {
                    if Comparable::of_key(k).matches(*op, &lit) {
                        out.extend(ids.iter().copied());
                    }
                }
            };
            match (&lit, op) {
                (Comparable::Code(s, c), CmpOp::Eq) => {
                    if let Some(ids) = m.get(&IndexKey::Code(s.clone(), c.clone())) {
                        out.extend(ids.iter().copied());
                    }
                }
                (Comparable::Text(t), CmpOp::Eq) => {
                    if let Some(ids) = m.get(&IndexKey::Text(t.clone())) {
                        out.extend(ids.iter().copied());
                    }
                    take(
                        &mut out,
                        &mut m.range(IndexKey::Code(String::new(), String::new())..IndexKey::Text(String::new())),
                    );
                }
                (Comparable::Time(t), _) => {
                    take(&mut out, &mut m.range(IndexKey::Date(i32::MIN)..=IndexKey::Date(i32::MAX)));
                    let (lo, hi) = match op {
                        CmpOp::Eq => (*t, *t),
                        CmpOp::Lt | CmpOp::Le => (i64::MIN, *t),
                        _ => (*t, i64::MAX),
                    };
                    take(&mut out, &mut m.range(IndexKey::DateTime(lo)..=IndexKey::DateTime(hi)));
                }
                _ => take(&mut out, &mut m.iter()),
            }
            Some(sorted(out))
        }
        Expr::In(f, ls) => {
            let mut out = Vec::new();
            for l in ls {
                out.extend(plan(&Expr::Cmp(f.clone(), CmpOp::Eq, l.clone()), cat, slot_of)?);
            }
            Some(sorted(out))
        }
        Expr::And(..) => {
            let mut conjuncts = Vec::new();
            flatten_and(x, &mut conjuncts);
            // `f >= a and f < b` on a time field: one range scan instead of two half scans.
            // (merged_time_range only answers when every conjunct is such a range.)
            if let Some(range) = merged_time_range(&conjuncts, cat) {
                return Some(range);
            }
            conjuncts.sort_by_key(|c| estimate(c, cat, slot_of));
            let mut acc: Option<Candidates> = None;
            for c in conjuncts {
                if acc.as_ref().is_some_and(|a| a.len() <= SMALL) {
                    break;
                }
                if let Some(p) = plan(c, cat, slot_of) {
                    acc = Some(match acc {
                        Some(a) => intersect(a, p),
                        None => p,
                    });
                }
            }
            acc
        }
        Expr::Or(a, b) => {
            let mut x = plan(a, cat, slot_of)?;
            x.extend(plan(b, cat, slot_of)?);
            Some(sorted(x))
        }
        _ => None,
    }
}

/// If every conjunct is a range comparison with a date or datetime on one and the same
/// indexed field, the candidates of their intersection from a single range scan.
fn merged_time_range(conjuncts: &[&Expr], cat: &Catalog) -> Option<Candidates> {
    let mut field: Option<&str> = None;
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for c in conjuncts {
        let Expr::Cmp(f, op, l) = c else { return None };
        if ATTRIBUTE_FIELDS.contains(&f.as_str()) || field.is_some_and(|x| x != f) {
            return None;
        }
        field = Some(f);
        let Comparable::Time(t) = Comparable::of_literal(l) else { return None };
        match op {
            CmpOp::Gt | CmpOp::Ge => lo = lo.max(t),
            CmpOp::Lt | CmpOp::Le => hi = hi.min(t),
            _ => return None,
        }
    }
    let m = cat.values().get(field?)?;
    if lo > hi {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let days = |t: i64| t.div_euclid(86_400_000_000).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let lo_day = if lo == i64::MIN { i32::MIN } else { days(lo) };
    let hi_day = if hi == i64::MAX { i32::MAX } else { days(hi) };
    // Candidate superset; the filter applies the exact (strict or not) bounds afterwards.
    for (_, ids) in m.range(IndexKey::Date(lo_day)..=IndexKey::Date(hi_day)) {
        out.extend(ids.iter().copied());
    }
    for (_, ids) in m.range(IndexKey::DateTime(lo)..=IndexKey::DateTime(hi)) {
        out.extend(ids.iter().copied());
    }
    Some(sorted(out))
}

fn flatten_and<'a>(x: &'a Expr, out: &mut Vec<&'a Expr>) {
    match x {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

impl Decision {
    /// The denial reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Deny(r) => Some(r),
            Decision::Permit { .. } => None,
        }
    }
}
