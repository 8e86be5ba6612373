//! `demo DIR`: builds a vault of synthetic patients and walks through what chartvault
//! does: role- and purpose-based access with redaction, refusals, break-glass, the
//! audit trail, the accounting of disclosures, and what is (not) on disk.
//!
//! Everything here is synthetic and deterministic: the same names, dates and values
//! on every run, so the final scan can look for known plaintext in the files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chartvault::access::{Grant, Operation, Part2Consent, PatientRules, Policy, Principal, Purpose, Role};
use chartvault::{Coding, Date, DateTime, Decimal, Label, NewDocument, Value, Vault, VaultKey, VaultOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::DemoArgs;
use crate::error::{CliError, CliResult, io_error};
use crate::output::{self, Table, human_size};
use crate::unlock::{self, PASSPHRASE_ENV};

/// The passphrase of demo vaults when `CHARTVAULT_PASSPHRASE` is not set. It is
/// printed on screen: demo vaults hold synthetic data only.
pub const DEMO_PASSPHRASE: &str = "demo passphrase - not for real data";

/// Number of synthetic patients.
pub const PATIENTS: usize = 50;

/// Patients loaded per commit.
const PATIENTS_PER_BATCH: usize = 5;

/// The data file's name inside DIR.
pub const VAULT_FILE: &str = "vault.cv";

/// Organization of every demo user.
const ORG: &str = "general-hospital";

/// A sentence of patient 0's clinical note; the on-disk scan looks for it.
pub const NOTE_SENTENCE: &str = "Reports waking at night with chest tightness since moving to Alder Creek.";

/// Text of the one psychotherapy note.
const PSYCHOTHERAPY_TEXT: &str =
    "Session 4: explored grief after the loss of a sibling; practised grounding techniques; risk assessment unchanged.";

// ---------------------------------------------------------------------------------
// Deterministic synthetic data
// ---------------------------------------------------------------------------------

/// A small deterministic pseudo-random generator (xorshift64*): the demo must be the
/// same on every run and needs no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const GIVEN: &[&str] = &[
    "Amelia", "Jonah", "Priya", "Mateo", "Grace", "Tobias", "Leilani", "Omar", "Ingrid", "Kwame", "Sofia", "Declan",
    "Mei", "Rafael", "Noor", "Elliot", "Hana", "Viktor", "Imani", "Callum", "Lucia", "Desmond", "Anika", "Felix",
    "Zara", "Tomas", "Yara", "Benedikt", "Nadia", "Hugo",
];
const FAMILY: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Raghunathan",
    "Castellanos",
    "Whitfield",
    "Brennan",
    "Kealoha",
    "Haddad",
    "Sorensen",
    "Mensah",
    "Ferreira",
    "Gallagher",
    "Tanaka",
    "Abernathy",
    "Karimi",
    "Duchamp",
    "Nakamura",
    "Petrov",
    "Adeyemi",
    "MacLeod",
    "Bianchi",
    "Ashworth",
    "Varga",
    "Oyelaran",
    "Quintero",
    "Halvorsen",
    "Szabo",
    "Delacroix",
    "Mwangi",
    "Ellery",
];
const STREETS: &[&str] = &[
    "Juniper",
    "Harbor View",
    "Old Mill",
    "Larkspur",
    "Cedar Hollow",
    "Wexford",
    "Quarry",
    "Bellweather",
    "Sycamore",
    "Tamarack",
];
const STREET_TYPES: &[&str] = &["Road", "Lane", "Avenue", "Court", "Way", "Drive"];
const CITIES: &[(&str, &str, &str)] = &[
    ("Alder Creek", "OR", "97015"),
    ("Millbrook", "NY", "12545"),
    ("Port Ellis", "ME", "04101"),
    ("Red Mesa", "AZ", "85001"),
    ("Fairhaven", "WA", "98225"),
];

/// (LOINC code, display, unit, low, high, decimals)
const LABS: &[(&str, &str, &str, u64, u64, u32)] = &[
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 48, 110, 1),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 240, 0),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 98, 168, 0),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 185, 395, 1),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 290, 0),
];

/// (ICD-10-CM code, display)
const CONDITIONS: &[(&str, &str)] = &[
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("M54.50", "Low back pain, unspecified"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
];

/// (RxNorm code, display)
const MEDICATIONS: &[(&str, &str)] = &[
    ("860975", "metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("617310", "atorvastatin 20 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("245314", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
];

const NOTE_OPENINGS: &[&str] = &[
    "Seen for routine follow-up.",
    "Returns after three months.",
    "Telehealth visit at patient's request.",
    "Follow-up after recent lab work.",
];
const NOTE_BODIES: &[&str] = &[
    "Tolerating medication without side effects; home readings within target.",
    "Describes improved sleep and more energy since adjusting the evening dose.",
    "Notes occasional dizziness on standing; advised slow position changes.",
    "Walking thirty minutes most days; diet changes going well.",
];

/// One synthetic patient and their documents.
pub struct DemoPatient {
    /// Medical record number (the patient identifier in the vault).
    pub mrn: String,
    /// Full name.
    pub name: String,
    /// Street address line.
    pub street: String,
    /// The documents to store, the first being the `Patient` demographics.
    pub docs: Vec<NewDocument>,
}

fn date(y: u64, m: u64, d: u64) -> Value {
    Value::Date(Date::parse(&format!("{y:04}-{m:02}-{d:02}")).unwrap_or_else(|_| unreachable!("valid synthetic date")))
}

fn datetime(y: u64, m: u64, d: u64, h: u64, min: u64) -> Value {
    Value::DateTime(
        DateTime::parse(&format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:00Z"))
            .unwrap_or_else(|_| unreachable!("valid synthetic datetime")),
    )
}

fn decimal(units: u64, decimals: u32) -> Value {
    let v = Decimal::new(i64::try_from(units).unwrap_or(0), decimals);
    Value::Decimal(v)
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn code(system: &str, c: &str, display: &str) -> Value {
    Value::from(Coding::new(system, c, Some(display)))
}

fn doc(patient: &str, kind: &str) -> NewDocument {
    NewDocument::new(patient, kind).unwrap_or_else(|_| unreachable!("valid synthetic kind"))
}

/// Generates `n` synthetic patients, deterministically. Patient 0 additionally has a
/// psychotherapy note, a substance-use condition (labelled `substance-use`) and a claim.
pub fn generate(n: usize) -> Vec<DemoPatient> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let mrn = format!("MRN-{}", 204_710 + i * 37);
            let given = GIVEN[i % GIVEN.len()];
            let family = FAMILY[(i * 7 + i / GIVEN.len()) % FAMILY.len()];
            let name = format!("{given} {family}");
            let (city, state, zip) = *rng.pick(CITIES);
            let street = format!("{} {} {}", rng.range(12, 9870), rng.pick(STREETS), rng.pick(STREET_TYPES));
            let birth_year = rng.range(1938, 2006);
            let mut docs = vec![
                doc(&mrn, "Patient")
                    .with("identifier", text(mrn.clone()))
                    .with("name", text(name.clone()))
                    .with("birthDate", date(birth_year, rng.range(1, 12), rng.range(1, 28)))
                    .with(
                        "gender",
                        code(
                            "http://hl7.org/fhir/administrative-gender",
                            if i % 2 == 0 { "female" } else { "male" },
                            if i % 2 == 0 { "Female" } else { "Male" },
                        ),
                    )
                    .with("address", text(format!("{street}, {city}, {state} {zip}")))
                    .with("phone", text(format!("+1-555-{:03}-{:04}", rng.range(200, 989), rng.range(0, 9999)))),
            ];
            // Patient 0 always gets the HbA1c and the diabetes diagnosis the walkthrough uses.
            let n_labs = if i == 0 { 3 } else { rng.range(1, 3) as usize };
            for k in 0..n_labs {
                let (c, display, unit, lo, hi, dec) = if k == 0 && i == 0 { LABS[0] } else { *rng.pick(LABS) };
                docs.push(
                    doc(&mrn, "Observation")
                        .with("status", text("final"))
                        .with(
                            "category",
                            code(
                                "http://terminology.hl7.org/CodeSystem/observation-category",
                                "laboratory",
                                "Laboratory",
                            ),
                        )
                        .with("code", code("loinc", c, display))
                        .with("value", decimal(rng.range(lo, hi), dec))
                        .with("unit", text(unit))
                        .with(
                            "effective",
                            datetime(2025, rng.range(1, 12), rng.range(1, 28), rng.range(7, 17), rng.range(0, 59)),
                        ),
                );
            }
            let n_cond = if i == 0 { 1 } else { rng.range(1, 2) as usize };
            for k in 0..n_cond {
                let (c, display) = if k == 0 && i == 0 { CONDITIONS[0] } else { *rng.pick(CONDITIONS) };
                docs.push(
                    doc(&mrn, "Condition")
                        .with("clinicalStatus", text("active"))
                        .with("code", code("icd10cm", c, display))
                        .with("onset", date(rng.range(2012, 2025), rng.range(1, 12), rng.range(1, 28))),
                );
            }
            for _ in 0..rng.range(1, 2) {
                let (c, display) = *rng.pick(MEDICATIONS);
                docs.push(
                    doc(&mrn, "MedicationRequest")
                        .with("status", text("active"))
                        .with("code", code("rxnorm", c, display))
                        .with("dosage", text("1 tablet by mouth daily"))
                        .with("authored", date(2025, rng.range(1, 12), rng.range(1, 28))),
                );
            }
            let note = if i == 0 {
                format!("{} {NOTE_SENTENCE} Plan: ECG today, review in two weeks.", NOTE_OPENINGS[0])
            } else {
                format!("{} {}", rng.pick(NOTE_OPENINGS), rng.pick(NOTE_BODIES))
            };
            docs.push(
                doc(&mrn, "ClinicalNote")
                    .with("date", date(2025, rng.range(1, 12), rng.range(1, 28)))
                    .with("type", code("loinc", "11506-3", "Progress note"))
                    .with("status", text("final"))
                    .with("text", text(note)),
            );
            if i == 0 {
                docs.push(
                    doc(&mrn, "PsychotherapyNote")
                        .with("date", date(2025, 10, 14))
                        .with("text", text(PSYCHOTHERAPY_TEXT)),
                );
                docs.push(
                    doc(&mrn, "Condition")
                        .with_labeled(
                            "code",
                            code("icd10cm", "F10.20", "Alcohol dependence, uncomplicated"),
                            vec![Label::substance_use()],
                        )
                        .with_labeled("clinicalStatus", text("active"), vec![Label::substance_use()])
                        .with("onset", date(2021, 6, 1)),
                );
                docs.push(
                    doc(&mrn, "Claim")
                        .with("status", text("active"))
                        .with("code", code("cpt", "99214", "Office visit, established patient, moderate complexity"))
                        .with("date", date(2025, 11, 3))
                        .with("payer", text("Cascade Mutual Health PPO"))
                        .with("memberId", text("CMH-88213-04"))
                        .with("total", decimal(18240, 2))
                        .with("patientResponsibility", decimal(3000, 2)),
                );
            }
            DemoPatient { mrn, name, street, docs }
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The walkthrough
// ---------------------------------------------------------------------------------

fn principal(user: &str, role: Role, purpose: Purpose) -> Principal {
    Principal::new(user, role, ORG, purpose)
}

fn step(n: u32, title: &str) {
    println!();
    println!("{n}. {title}");
}

/// The demo policy: the hospital default plus a write-only `interface` role for the
/// import feed (it may create records but read none).
fn demo_policy() -> CliResult<Policy> {
    let mut p = Policy::hospital_default();
    p.name = "hospital-default+import-feed".into();
    p.grants.push(Grant {
        roles: vec![Role::new("interface")?],
        purposes: vec![Purpose::Treat],
        operations: vec![Operation::Create],
        kinds: None,
        exclude_kinds: Vec::new(),
        labels: Label::builtin(),
        care_team: false,
        own_records: false,
        deidentify: false,
    });
    Ok(p)
}

fn refuse_existing_vault(dir: &Path) -> CliResult<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("read folder", dir, &e)),
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let mut magic = [0u8; 8];
        let is_vault = p.file_name().is_some_and(|n| n == VAULT_FILE)
            || std::fs::File::open(&p).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
                && (&magic == chartvault::format::header::MAGIC
                    || &magic == chartvault::format::keyring::KEYRING_MAGIC);
        if is_vault {
            return Err(CliError::new(format!(
                "{} already contains a vault ({}); choose an empty or new folder",
                dir.display(),
                p.display()
            )));
        }
    }
    Ok(())
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io_error("read folder", &d, &e))? {
            let entry = entry.map_err(|e| io_error("read folder", &d, &e))?;
            let ft = entry.file_type().map_err(|e| io_error("inspect", &entry.path(), &e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// Runs the demo in `a.dir`.
pub fn run(a: DemoArgs) -> CliResult<()> {
    let t0 = Instant::now();
    let dir = a.dir;
    refuse_existing_vault(&dir)?;
    std::fs::create_dir_all(&dir).map_err(|e| io_error("create folder", &dir, &e))?;
    let path = dir.join(VAULT_FILE);

    println!("chartvault demo: synthetic patients only. Never put real patient data in a demo vault.");
    let env_pass = unlock::from_env(PASSPHRASE_ENV)?;
    let passphrase: zeroize::Zeroizing<Vec<u8>> = match env_pass {
        Some(p) => {
            println!("passphrase: taken from {PASSPHRASE_ENV}");
            p
        }
        None => {
            println!(
                "passphrase: the fixed demo passphrase \"{DEMO_PASSPHRASE}\" (set {PASSPHRASE_ENV} to choose another)"
            );
            zeroize::Zeroizing::new(DEMO_PASSPHRASE.as_bytes().to_vec())
        }
    };

    // 1. Create.
    step(1, "Creating the vault (Argon2id passphrase slot: 64 MiB, 3 passes)");
    let t = Instant::now();
    let opts = VaultOptions { initial_policy: demo_policy()?, ..VaultOptions::default() };
    let vault = Vault::create(&path, VaultKey::Passphrase(&passphrase), opts)?;
    println!("   {}  (data file)", path.display());
    println!("   {}  (patient keyring)", chartvault::store::keyring_path(&path).display());
    println!("   created in {:.2} s", t.elapsed().as_secs_f64());

    let patients = generate(PATIENTS);
    let p0 = &patients[0];

    // 2. Consent.
    step(2, "The privacy officer records patient 0's 42 CFR Part 2 consent (treatment at general-hospital)");
    let po = vault.session(principal("po.rivera", Role::privacy_officer(), Purpose::Compliance))?;
    po.set_patient_rules(PatientRules {
        patient: p0.mrn.clone(),
        part2_consents: vec![Part2Consent { organization: ORG.into(), purposes: vec![Purpose::Treat], expires: None }],
        ..PatientRules::default()
    })?;
    println!("   without it, substance-use records could be neither written nor read here");

    // 3. Load.
    let total_docs: usize = patients.iter().map(|p| p.docs.len()).sum();
    step(
        3,
        &format!("Loading {PATIENTS} synthetic patients ({total_docs} documents) through a write-only import feed"),
    );
    let feed = vault.session(principal("hl7.feed", Role::new("interface")?, Purpose::Treat))?;
    let target =
        if std::io::stdout().is_terminal() { ProgressDrawTarget::stdout() } else { ProgressDrawTarget::hidden() };
    let pb = ProgressBar::with_draw_target(Some(PATIENTS as u64), target);
    if let Ok(style) = ProgressStyle::with_template("   [{bar:40}] {pos}/{len} patients  {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    let t = Instant::now();
    let mut ids: Vec<Vec<chartvault::DocumentId>> = Vec::with_capacity(PATIENTS);
    let mut commits = 0;
    for chunk in patients.chunks(PATIENTS_PER_BATCH) {
        let mut b = feed.batch()?;
        for p in chunk {
            ids.push(b.put_all(&p.docs)?);
            pb.inc(1);
        }
        b.commit()?;
        commits += 1;
        pb.set_message(format!("{commits} commits"));
    }
    pb.finish_and_clear();
    println!(
        "   stored {total_docs} documents in {commits} commits (one fsync each) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    match feed.get(&ids[0][0]) {
        Err(e) => println!("   the feed cannot read back what it wrote: {e}"),
        Ok(_) => {
            return Err(CliError::new(
                "demo: the import feed could read a record; the policy is not what the demo expects",
            ));
        }
    }
    drop(feed);

    // Where patient 0's documents are.
    let kind_of = |k: &str| p0.docs.iter().position(|d| d.kind.as_str() == k).map(|i| ids[0][i]);
    let find = |k: &str| kind_of(k).ok_or_else(|| CliError::new(format!("demo: no {k} generated")));
    let note_id = find("ClinicalNote")?;
    let psy_id = find("PsychotherapyNote")?;
    let a1c_id = find("Observation")?;
    let dm_id = find("Condition")?;

    // 4. Physician.
    step(4, &format!("Dr. Grey (physician, care team of {}, purpose TREAT) opens the chart", p0.mrn));
    let dr =
        vault.session(principal("dr.grey", Role::physician(), Purpose::Treat).with_care_team([p0.mrn.as_str()]))?;
    let chart = dr.chart(&p0.mrn)?;
    let mut t = Table::new(&["KIND", "CONTENT"]);
    for d in &chart {
        t.row(vec![d.kind.to_string(), output::document_summary(d, 104)]);
    }
    t.print(3);
    let withheld: usize = chart.iter().map(|d| d.redacted.len()).sum();
    println!(
        "   {} documents; {withheld} field(s) withheld even from the treating physician (financial details need the billing role)",
        chart.len()
    );

    // 5. Billing.
    step(5, "Bob (billing, purpose HPAYMT) reads the same clinical note");
    let billing = vault.session(principal("bob.billing", Role::billing(), Purpose::Payment))?;
    let note = billing.get(&note_id)?;
    output::print_document_fields(&note, 3);
    println!("   the note text stays sealed: billing holds no key for the `restricted` label group");

    // 6. Nurse refused.
    step(6, "Nurse Kim (nurse, care team, purpose TREAT) asks for the psychotherapy note");
    let nurse = vault.session(principal("rn.kim", Role::nurse(), Purpose::Treat).with_care_team([p0.mrn.as_str()]))?;
    match nurse.get(&psy_id) {
        Err(e) => println!("   refused: {e}"),
        Ok(_) => {
            return Err(CliError::new("demo: the nurse could read the psychotherapy note"));
        }
    }
    println!("   the refusal is itself recorded in the audit trail");

    // 7. Break-glass.
    step(7, &format!("Dr. Patel (ER physician, no care relationship) needs {}'s chart at 3 a.m.", p0.mrn));
    let er = vault.session(principal("dr.patel", Role::physician(), Purpose::Treat))?;
    let before = er.chart(&p0.mrn)?;
    println!("   before break-glass: {} of {} documents visible", before.len(), p0.docs.len());
    let reason = "Unresponsive on arrival in the ED; no prior relationship; need medication list and allergies";
    er.break_glass(&p0.mrn, reason)?;
    println!("   break-glass requested: \"{reason}\"");
    let after = er.chart(&p0.mrn)?;
    println!(
        "   after break-glass:  {} of {} documents visible (psychotherapy notes stay closed even in an emergency)",
        after.len(),
        p0.docs.len()
    );
    println!("   every access under the grant is flagged for the privacy officer's review");

    // 8. Disclosures.
    step(8, "Releases of information are recorded in the disclosure ledger");
    let him = vault.session(principal("him.okoro", Role::him_coder(), Purpose::PublicHealth))?;
    him.record_disclosure(&chartvault::DisclosureRequest {
        patient: p0.mrn.clone(),
        recipient: "County Public Health Department, 100 Main St, Alder Creek OR".into(),
        description: "Reportable condition notice (diagnosis and onset date)".into(),
        documents: vec![dm_id],
    })?;
    println!("   him.okoro (HIM, purpose PUBHLTH): diagnosis sent to the county health department");
    dr.record_disclosure(&chartvault::DisclosureRequest {
        patient: p0.mrn.clone(),
        recipient: "Riverside Endocrinology Clinic, 40 Elm St, Millbrook NY".into(),
        description: "HbA1c result for referral".into(),
        documents: vec![a1c_id],
    })?;
    println!("   dr.grey (purpose TREAT): HbA1c sent with a referral (a treatment disclosure, exempt from accounting)");

    // 9. Audit.
    step(9, "The privacy officer checks the audit trail and prepares the accounting of disclosures");
    let av = po.audit_verify()?;
    if !av.is_intact() {
        return Err(CliError::new(format!("demo: the audit trail does not verify: {} problem(s)", av.problems.len())));
    }
    println!("   audit trail: {} entries, every one authenticated, in sequence, hash chain unbroken", av.entries);
    let acc = po.accounting_of_disclosures(&p0.mrn)?;
    println!("   accounting of disclosures for {} (45 CFR 164.528):", acc.patient);
    let mut t = Table::new(&["DATE", "RECIPIENT", "PURPOSE", "DESCRIPTION", "ACCOUNTABLE"]);
    for (l, accountable) in acc.accountable.iter().map(|l| (l, "yes")).chain(acc.exempt.iter().map(|l| (l, "exempt"))) {
        t.row(vec![
            l.date.chars().take(19).collect(),
            output::truncate(&l.recipient, 34),
            l.purpose.clone(),
            output::truncate(&l.description, 36),
            accountable.into(),
        ]);
    }
    t.print(5);
    let bg = po.break_glass_report()?;
    println!(
        "   break-glass review: {} request(s), {} access(es) under break-glass to review",
        bg.requests.len(),
        bg.accesses.len()
    );
    let rep = vault.verify()?;
    println!(
        "   full file verification: {} frames, {} commits, {} records, {} label groups: {}",
        rep.frames,
        rep.commits,
        rep.records,
        rep.groups,
        if rep.is_clean() { "clean" } else { "NOT CLEAN" }
    );
    if !rep.is_clean() {
        return Err(CliError::new("demo: the vault does not verify clean"));
    }
    drop((dr, billing, nurse, er, him, po));
    vault.close()?;

    // 10. Disk.
    step(10, "What is on disk");
    let files = files_under(&dir)?;
    for f in &files {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        println!("   {:<24} {}", rel(&dir, f), human_size(len));
    }
    let needles: Vec<(String, &str)> = vec![
        (patients[0].name.clone(), "patient name"),
        (patients[1].name.clone(), "patient name"),
        (patients[2].name.clone(), "patient name"),
        (patients[0].street.clone(), "street address"),
        (patients[0].mrn.clone(), "medical record number"),
        (NOTE_SENTENCE.to_string(), "clinical note sentence"),
        ("grounding techniques".to_string(), "psychotherapy note words"),
        ("Cascade Mutual".to_string(), "claim payer"),
    ];
    println!("   scanning every byte of every file in {} for plaintext the demo stored:", dir.display());
    let contents: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| std::fs::read(f).map(|b| (f.clone(), b)).map_err(|e| io_error("read", f, &e)))
        .collect::<CliResult<_>>()?;
    let mut leaks = 0;
    for (needle, what) in &needles {
        let found: Vec<String> =
            contents.iter().filter(|(_, b)| contains(b, needle.as_bytes())).map(|(p, _)| rel(&dir, p)).collect();
        let shown = format!("\"{}\" ({what})", output::truncate(needle, 44));
        if found.is_empty() {
            println!("     {shown:<70} not found");
        } else {
            leaks += 1;
            println!("     {shown:<70} FOUND in {}", found.join(", "));
        }
    }
    if leaks > 0 {
        return Err(CliError::new(format!("demo: {leaks} plaintext value(s) found on disk")));
    }

    let elapsed = t0.elapsed();
    println!();
    println!("done in {:.1} s. Explore the vault yourself, for example:", elapsed.as_secs_f64());
    let pass_hint = if std::env::var_os(PASSPHRASE_ENV).is_some() {
        String::new()
    } else {
        format!("{PASSPHRASE_ENV}='{DEMO_PASSPHRASE}' ")
    };
    println!(
        "  {pass_hint}chartvault chart {} {} --user dr.grey --role physician --purpose TREAT --care-team {}",
        path.display(),
        p0.mrn,
        p0.mrn
    );
    println!(
        "  {pass_hint}chartvault report access {} --patient {} --user po.rivera --role privacy-officer --purpose HCOMPL",
        path.display(),
        p0.mrn
    );
    if elapsed > Duration::from_secs(10) {
        eprintln!("note: the demo took longer than expected ({:.1} s) on this machine", elapsed.as_secs_f64());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_valid() {
        let a = generate(PATIENTS);
        let b = generate(PATIENTS);
        assert_eq!(a.len(), PATIENTS);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.mrn, y.mrn);
            assert_eq!(x.docs, y.docs);
            for d in &x.docs {
                d.validate().unwrap();
            }
        }
        let mrns: std::collections::BTreeSet<_> = a.iter().map(|p| &p.mrn).collect();
        assert_eq!(mrns.len(), PATIENTS);
        let kinds = |k: &str| a.iter().flat_map(|p| &p.docs).filter(|d| d.kind.as_str() == k).count();
        assert_eq!(kinds("PsychotherapyNote"), 1);
        assert_eq!(kinds("Claim"), 1);
        assert_eq!(kinds("Patient"), PATIENTS);
        let sud = a
            .iter()
            .flat_map(|p| &p.docs)
            .filter(|d| d.fields.values().any(|f| f.labels.contains(&Label::substance_use())))
            .count();
        assert_eq!(sud, 1);
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"xxabcxx", b"abc"));
        assert!(!contains(b"xxabxcx", b"abc"));
        assert!(!contains(b"ab", b"abc"));
    }
}
