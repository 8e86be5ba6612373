//! The synthetic workload shared by every engine (this file is also compiled into the
//! plain-SQLite runner, so it depends on nothing but `std` and `serde`).
//!
//! Document `i` is a lab result (LOINC, kind Observation) or a diagnosis (ICD-10-CM,
//! kind Condition) of patient `i % patients`, so each patient's ~20 documents are
//! spread over the whole file, as they are when they arrive over years. Every
//! document is generated from its index alone (deterministic), as about 1 KiB of JSON
//! with 17 fields across four sensitivity labels:
//!
//! | label | fields |
//! |---|---|
//! | demographics | name, birthDate, address, phone |
//! | normal (clinical) | code, effective, issued, status, category, value, unit, interpretation, performer |
//! | restricted | note (free text, ~400 bytes) |
//! | financial | billingCode, charge, payer, claimId |

use serde::{Deserialize, Serialize};

/// Days since 1970-01-01 of 2019-01-01: the first `effective` date.
pub const FIRST_DAY: i32 = 17_897;
/// `effective` dates cover this many days (five years).
pub const DAY_SPAN: i32 = 1_826;
/// Distinct codes: `LOINC_CODES` LOINC codes, then ICD-10-CM codes.
pub const CODES: u64 = 400;
/// The first `LOINC_CODES` codes are LOINC (Observation), the rest ICD-10-CM (Condition).
pub const LOINC_CODES: u64 = 300;

/// Parameters of one run, identical for every engine (the compare program hands them
/// to the SQLite runner as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    /// Documents bulk-loaded.
    pub docs: u64,
    /// Documents per bulk-load commit.
    pub batch: u64,
    /// Single-document durable commits after the load.
    pub single_commits: u64,
    /// Random point reads.
    pub point_reads: u64,
    /// Patient-chart reads.
    pub charts: u64,
    /// Code queries (each a different code).
    pub code_queries: u64,
    /// Date-range queries (each a different window).
    pub range_queries: u64,
    /// Days in a date-range window.
    pub range_days: i32,
    /// Repetitions of each open measurement (the median is reported).
    pub opens: u32,
    /// RNG seed.
    pub seed: u64,
    /// SQL page cache, MiB (both SQL engines).
    pub sql_cache_mib: u64,
    /// Directory for the databases (must be a real disk: fsync must cost what it costs).
    pub dir: String,
}

impl Params {
    /// Number of patients: 20 documents each.
    pub fn patients(&self) -> u64 {
        (self.docs / 20).max(1)
    }

    /// Total documents written (bulk load plus single commits).
    pub fn total_docs(&self) -> u64 {
        self.docs + self.single_commits
    }
}

/// SplitMix64: a tiny deterministic generator (the same stream on every engine).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// One synthetic document.
#[derive(Debug, Clone)]
pub struct Record {
    /// Index in the workload (0-based); SQL rowid and redb key are `idx + 1`.
    pub idx: u64,
    /// Patient identifier, `MRN-0000042`.
    pub patient: String,
    /// `Observation` or `Condition`.
    pub kind: &'static str,
    /// Code system alias: `loinc` or `icd10cm`.
    pub system: &'static str,
    /// The code.
    pub code: String,
    /// Display text of the code.
    pub display: String,
    /// `effective` as days since 1970-01-01.
    pub effective: i32,
    /// `issued` as seconds since the Unix epoch (a few days after `effective`).
    pub issued_s: i64,
    /// Status.
    pub status: &'static str,
    /// Category.
    pub category: &'static str,
    /// Value (for an Observation) as an exact decimal string, or a severity score.
    pub value: String,
    /// Unit.
    pub unit: &'static str,
    /// Interpretation flag.
    pub interpretation: &'static str,
    /// Performer.
    pub performer: String,
    /// Restricted free-text note.
    pub note: String,
    /// Demographics.
    pub name: String,
    /// Birth date, days since 1970-01-01.
    pub birth_date: i32,
    /// Address.
    pub address: String,
    /// Phone.
    pub phone: String,
    /// Financial: CPT billing code.
    pub billing_code: String,
    /// Financial: charge, exact decimal string.
    pub charge: String,
    /// Financial: payer.
    pub payer: &'static str,
    /// Financial: claim id.
    pub claim_id: String,
    /// The document as plain JSON (what the SQL engines and redb store).
    pub json: String,
}

const FIRST: &[&str] =
    &["Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Fatima", "John", "Yuki", "Amara", "Lars", "Priya"];
const LAST: &[&str] =
    &["Garcia", "Smith", "Okafor", "Chen", "Ivanova", "Silva", "Haddad", "Brown", "Tanaka", "Mensah", "Berg", "Patel"];
const STREETS: &[&str] = &["Maple Avenue", "Harbor Road", "Elm Street", "Station Lane", "Hillcrest Drive", "Mill Road"];
const CITIES: &[&str] = &["Springfield", "Riverton", "Lakewood", "Fairview", "Georgetown", "Ashland"];
const PAYERS: &[&str] = &["Acme Health Plan", "Medicare Part B", "Blue Valley Mutual", "Self-pay", "State Medicaid"];
const STATUSES: &[&str] = &["final", "final", "final", "amended", "preliminary"];
const UNITS: &[&str] = &["mg/dL", "mmol/L", "%", "g/dL", "10*3/uL", "U/L"];
const FLAGS: &[&str] = &["N", "N", "N", "H", "L", "A"];
const NOTE_WORDS: &[&str] = &[
    "patient",
    "reports",
    "mild",
    "fatigue",
    "since",
    "last",
    "visit",
    "denies",
    "chest",
    "pain",
    "reviewed",
    "results",
    "with",
    "family",
    "plan",
    "repeat",
    "labs",
    "in",
    "three",
    "months",
    "continue",
    "current",
    "medication",
    "advised",
    "diet",
    "and",
    "exercise",
    "follow-up",
    "scheduled",
    "no",
    "acute",
    "distress",
    "history",
    "of",
    "hypertension",
];

/// The code with number `c` (`0..CODES`): (system, code, display, kind).
pub fn code_of(c: u64) -> (&'static str, String, String, &'static str) {
    if c < LOINC_CODES {
        ("loinc", format!("{}-{}", 10_000 + c * 37, c % 10), format!("Synthetic lab test {c}"), "Observation")
    } else {
        let k = c - LOINC_CODES;
        let letter = [b'E', b'I', b'J', b'K', b'M'][(k % 5) as usize] as char;
        ("icd10cm", format!("{letter}{:02}.{}", k % 90 + 10, k % 10), format!("Synthetic diagnosis {k}"), "Condition")
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), civil-from-days.
pub fn date_string(days: i32) -> String {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC string of Unix seconds.
pub fn datetime_string(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    format!("{}T{:02}:{:02}:{:02}Z", date_string(days as i32), s / 3600, s / 60 % 60, s % 60)
}

/// Patient identifier of patient number `p`.
pub fn patient_id(p: u64) -> String {
    format!("MRN-{p:07}")
}

/// Generates document `idx`.
pub fn record(params: &Params, idx: u64) -> Record {
    let seed = params.seed;
    let mut r = Rng::new(seed.wrapping_add(idx.wrapping_mul(0x2545_f491_4f6c_dd1d)));
    let c = r.below(CODES);
    let effective = FIRST_DAY + r.below(DAY_SPAN as u64) as i32;
    let p = idx % params.patients();
    // Demographics depend on the patient only.
    let mut pr = Rng::new(seed ^ p.wrapping_mul(0x9e6c_63d0_676a_9a99));
    let name =
        format!("{} {}", FIRST[pr.below(FIRST.len() as u64) as usize], LAST[pr.below(LAST.len() as u64) as usize]);
    let birth_date = -10_000 + pr.below(25_000) as i32;
    let address = format!(
        "{} {}, {} {:05}",
        1 + pr.below(2000),
        STREETS[pr.below(STREETS.len() as u64) as usize],
        CITIES[pr.below(CITIES.len() as u64) as usize],
        10_000 + pr.below(89_999)
    );
    let phone = format!("+1-555-{:03}-{:04}", pr.below(1000), pr.below(10_000));
    let (system, code, display, kind) = code_of(c);
    let issued_s = i64::from(effective) * 86_400 + 3600 * 7 + r.below(3 * 86_400) as i64;
    let mut note = String::with_capacity(440);
    while note.len() < 400 {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(NOTE_WORDS[r.below(NOTE_WORDS.len() as u64) as usize]);
    }
    note.push('.');
    let value = format!("{}.{}", r.below(300), r.below(10));
    let rec = Record {
        idx,
        patient: patient_id(p),
        kind,
        system,
        code,
        display,
        effective,
        issued_s,
        status: STATUSES[r.below(STATUSES.len() as u64) as usize],
        category: if kind == "Observation" { "laboratory" } else { "problem-list-item" },
        value,
        unit: UNITS[r.below(UNITS.len() as u64) as usize],
        interpretation: FLAGS[r.below(FLAGS.len() as u64) as usize],
        performer: format!("Practitioner/{}", 1000 + r.below(500)),
        note,
        name,
        birth_date,
        address,
        phone,
        billing_code: format!("{}", 80_000 + r.below(9_999)),
        charge: format!("{}.{:02}", 10 + r.below(990), r.below(100)),
        payer: PAYERS[r.below(PAYERS.len() as u64) as usize],
        claim_id: format!("CLM-{:012}", r.next_u64() % 1_000_000_000_000),
        json: String::new(),
    };
    let json = to_json(&rec);
    Record { json, ..rec }
}

/// The plain JSON form (all generated strings are plain ASCII without quotes or
/// backslashes, so no escaping is needed).
fn to_json(r: &Record) -> String {
    let system_url = if r.system == "loinc" { "http://loinc.org" } else { "http://hl7.org/fhir/sid/icd-10-cm" };
    format!(
        concat!(
            r#"{{"resourceType":"{kind}","id":"{idx}","patient":"{patient}","#,
            r#""demographics":{{"name":"{name}","birthDate":"{birth}","address":"{address}","phone":"{phone}"}},"#,
            r#""code":{{"system":"{system_url}","code":"{code}","display":"{display}"}},"#,
            r#""effective":"{effective}","issued":"{issued}","status":"{status}","category":"{category}","#,
            r#""value":{{"value":{value},"unit":"{unit}"}},"interpretation":"{interp}","performer":"{performer}","#,
            r#""note":"{note}","#,
            r#""billing":{{"code":"{billing}","charge":"{charge}","payer":"{payer}","claimId":"{claim}"}}}}"#
        ),
        kind = r.kind,
        idx = r.idx + 1,
        patient = r.patient,
        name = r.name,
        birth = date_string(r.birth_date),
        address = r.address,
        phone = r.phone,
        system_url = system_url,
        code = r.code,
        display = r.display,
        effective = date_string(r.effective),
        issued = datetime_string(r.issued_s),
        status = r.status,
        category = r.category,
        value = r.value,
        unit = r.unit,
        interp = r.interpretation,
        performer = r.performer,
        note = r.note,
        billing = r.billing_code,
        charge = r.charge,
        payer = r.payer,
        claim = r.claim_id,
    )
}

/// What the read phases ask for: the same random choices for every engine.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Document indexes to read, in order.
    pub point: Vec<u64>,
    /// Patients whose charts are read.
    pub charts: Vec<String>,
    /// (system, code) of each code query.
    pub codes: Vec<(String, String)>,
    /// [from, to) day windows of the date-range queries.
    pub ranges: Vec<(i32, i32)>,
}

impl ReadPlan {
    /// The plan for `params`.
    pub fn new(params: &Params) -> Self {
        let mut r = Rng::new(params.seed ^ 0x5eed_5eed);
        let total = params.total_docs();
        let point = (0..params.point_reads).map(|_| r.below(total)).collect();
        let charts = (0..params.charts).map(|_| patient_id(r.below(params.patients()))).collect();
        let codes = (0..params.code_queries)
            .map(|_| {
                let (s, c, _, _) = code_of(r.below(CODES));
                (s.to_string(), c)
            })
            .collect();
        let span = (DAY_SPAN - params.range_days).max(1) as u64;
        let ranges = (0..params.range_queries)
            .map(|_| {
                let from = FIRST_DAY + r.below(span) as i32;
                (from, from + params.range_days)
            })
            .collect();
        ReadPlan { point, charts, codes, ranges }
    }
}
