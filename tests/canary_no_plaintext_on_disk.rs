//! Property: no plaintext PHI on disk. Canary values in every field type, in patient
//! ids, kinds, field names, an attachment, an update, reads, a disclosure, patient
//! rules and a break-glass reason are written; then every byte of every file in the
//! vault's directory (data file and keyring) is scanned for each canary, as written,
//! lowercased and uppercased, and for the binary encodings of the numeric canaries.
//! None may appear.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chartvault::access::{PatientRules, Principal, Purpose, Role};
use chartvault::{
    Coding, Date, DateTime, Decimal, DisclosureRequest, Field, Label, NewDocument, Value, Vault, VaultKey,
};
use common::{key, opts, physician};

const PATIENT_A: &str = "MRN-CanaryPatientAlpha-7731";
const PATIENT_B: &str = "MRN-CanaryPatientBravo-9102";

/// Every marker written into the vault. Text-like markers are unique strings;
/// numeric ones are checked in text form and in their binary encodings.
struct Canaries {
    strings: Vec<String>,
    binary: Vec<(String, Vec<u8>)>,
}

/// LEB128 of a zigzag-encoded i64: how the body codec (postcard) writes an integer.
fn zigzag_varint(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_canary_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.cv");
    let mut c = Canaries { strings: Vec::new(), binary: Vec::new() };
    let mut s = |m: &str| {
        c.strings.push(m.to_string());
        m.to_string()
    };

    let text1 = s("CanaryFreeTextQuokka 11 Elm Street");
    let note = s("CanaryNoteWombatDepression");
    let sys = s("urn:oid:2.16.840.1.113883.CanarySystemNumbat");
    let code = s("CNRY-CODE-81754");
    let display = s("CanaryDisplayPlatypusDiagnosis");
    let dec_str = s("31415926.5358979323");
    let dec_neg = s("-2718281828.4590452");
    let list_text = s("CanaryListItemEchidna");
    let group_text = s("CanaryGroupValueBilby");
    let group_key = s("canaryGroupKeyDingo");
    let field_name = s("canaryFieldNameKoala");
    let kind = s("CanaryKindWallaby");
    let v2_text = s("CanaryUpdatedVersionTwoPossum");
    let att_marker = s("CanaryAttachmentBodyCassowary");
    let att_type = s("application/x-canary-emu");
    let recipient = s("CanaryRecipientClinic Kookaburra");
    let description = s("CanaryDisclosureDescriptionLyrebird");
    let reason = s("CanaryBreakGlassReasonTasmanian");
    let org = s("CanaryOrganizationGalah");
    let user = s("canary.user.quoll");
    s(PATIENT_A);
    s(PATIENT_B);
    // Dates and datetimes in their text forms (stored as numbers inside the seal).
    let date_s = s("1987-06-05");
    s("19870605");
    let dt_s = s("2023-04-05T06:07:08.123456+09:30");
    // Numbers: text and the encodings a leak would use.
    let big_int: i64 = 0x5A17_C0DE_1234_5678;
    c.strings.push(big_int.to_string());
    c.binary.push(("integer LE".into(), big_int.to_le_bytes().to_vec()));
    c.binary.push(("integer BE".into(), big_int.to_be_bytes().to_vec()));
    c.binary.push(("integer varint".into(), zigzag_varint(big_int)));
    let dt = DateTime::parse(&dt_s).unwrap();
    c.binary.push(("datetime micros LE".into(), dt.unix_micros().to_le_bytes().to_vec()));
    c.binary.push(("datetime micros varint".into(), zigzag_varint(dt.unix_micros())));
    c.strings.push(dt.unix_micros().to_string());
    c.strings.push(dec_str.replace('.', ""));

    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault
        .session(Principal::new(&user, Role::physician(), &org, Purpose::Treat).with_care_team([PATIENT_A, PATIENT_B]))
        .unwrap();

    let mut b = dr.batch().unwrap();
    let att_body = format!("%PDF-1.7 {att_marker} {att_marker} end").repeat(100);
    let att = b.put_attachment(&att_type, &mut att_body.as_bytes()).unwrap();
    let doc = NewDocument::new(PATIENT_A, "Observation")
        .unwrap()
        .with("text1", Value::Text(text1.clone()))
        .with("note", Value::Text(note.clone()))
        .with("code", Value::from(Coding::new(&sys, &code, Some(&display))))
        .with("value", Value::Decimal(dec_str.parse::<Decimal>().unwrap()))
        .with("delta", Value::Decimal(dec_neg.parse::<Decimal>().unwrap()))
        .with("effective", Value::DateTime(dt))
        .with("date", Value::Date(Date::parse(&date_s).unwrap()))
        .with("count", Value::Integer(big_int))
        .with(
            "items",
            Value::List(vec![
                Value::Text(list_text.clone()),
                Value::Group([(group_key.clone(), Value::Text(group_text.clone()))].into_iter().collect()),
            ]),
        )
        .with(&field_name, Value::Boolean(true))
        .with_labeled("hiv", Value::Text(format!("{text1} hiv")), vec![Label::hiv_sti()])
        .with("report", Value::from(att));
    let id_a = b.put(&doc).unwrap();
    let id_b = b
        .put(&NewDocument::new(PATIENT_B, &kind).unwrap().with("text1", Value::Text(format!("{text1} for bravo"))))
        .unwrap();
    b.commit().unwrap();

    // An update and reads of every kind.
    let mut fields: BTreeMap<String, Field> = doc.fields.clone();
    fields.insert("text1".into(), Value::Text(v2_text.clone()).into());
    assert_eq!(dr.update(&id_a, fields).unwrap(), 2);
    assert_eq!(dr.get(&id_a).unwrap().get("text1"), Some(&Value::Text(v2_text.clone())));
    assert_eq!(dr.get_version(&id_a, 1).unwrap().get("text1"), Some(&Value::Text(text1.clone())));
    assert_eq!(dr.history(&id_a).unwrap().len(), 2);
    assert_eq!(dr.chart(PATIENT_B).unwrap().len(), 1);
    assert!(dr.get(&id_b).is_ok());
    let mut out = Vec::new();
    dr.read_attachment(&id_a, "report", &mut out).unwrap();
    assert_eq!(out, att_body.as_bytes());

    // Disclosure ledger, patient rules and break-glass carry PHI too.
    dr.record_disclosure(&DisclosureRequest {
        patient: PATIENT_A.into(),
        recipient: recipient.clone(),
        description: description.clone(),
        documents: vec![id_a],
    })
    .unwrap();
    let po = vault.session(Principal::new("po", Role::privacy_officer(), "h", Purpose::Compliance)).unwrap();
    po.set_patient_rules(PatientRules { patient: PATIENT_B.into(), vip: true, ..Default::default() }).unwrap();
    let er = vault.session(Principal::new(&user, Role::physician(), &org, Purpose::Treat)).unwrap();
    er.break_glass(PATIENT_A, &reason).unwrap();
    assert!(er.get(&id_a).is_ok());
    // The audit trail is readable (so the canaries really went through it).
    assert!(po.access_report(PATIENT_A).unwrap().accesses.len() >= 3);
    drop((dr, po, er));
    vault.close().unwrap();

    // Reopen and read again, so reads after open leave their audit entries too.
    let vault = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault.session(physician([PATIENT_A, PATIENT_B])).unwrap();
    assert_eq!(dr.get(&id_a).unwrap().get("text1"), Some(&Value::Text(v2_text.clone())));
    drop(dr);
    vault.close().unwrap();

    // Scan.
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    assert!(all.len() >= 2, "data file and keyring: {all:?}");
    let mut saw_data_magic = false;
    let mut saw_keyring_magic = false;
    let mut leaks = Vec::new();
    for f in &all {
        let bytes = std::fs::read(f).unwrap();
        saw_data_magic |= find(&bytes, b"CHARTVLT").is_some();
        saw_keyring_magic |= find(&bytes, b"CVKEYRNG").is_some();
        for m in &c.strings {
            for variant in [m.clone(), m.to_lowercase(), m.to_uppercase()] {
                if let Some(at) = find(&bytes, variant.as_bytes()) {
                    leaks.push(format!("{variant:?} in {} at {at}", f.display()));
                }
            }
        }
        for (what, enc) in &c.binary {
            if let Some(at) = find(&bytes, enc) {
                leaks.push(format!("{what} {enc:02x?} in {} at {at}", f.display()));
            }
        }
    }
    // The scan sees the files' real bytes (positive control).
    assert!(saw_data_magic && saw_keyring_magic, "the scan read the data file and the keyring");
    assert!(leaks.is_empty(), "plaintext on disk:\n{}", leaks.join("\n"));
}
