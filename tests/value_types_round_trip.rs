//! Property: every value type survives a write and a read, in the same handle and
//! after close and reopen, exactly: nested lists and groups, decimals with their
//! scale, datetimes with their UTC offset, codes, per-field extra labels, and
//! attachments up to 64 MiB streamed in and out without holding them in memory.

mod common;

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::{Read, Write};

use chartvault::{
    AttachmentRef, Coding, Date, DateTime, Decimal, DocumentId, Field, Label, NewDocument, SessionBatch, Value, Vault,
    VaultKey,
};
use common::{Expected, assert_doc, key, opts, opts_ro, physician};

const BIG: u64 = 64 * 1024 * 1024;
const PATIENT: &str = "P1";

/// A chunking-independent stream hash: bytes are fed to SipHash in fixed-size
/// blocks, so how a stream is split into writes does not change the result.
struct StreamHash {
    buf: Vec<u8>,
    h: std::hash::DefaultHasher,
    len: u64,
}

impl StreamHash {
    const BLOCK: usize = 8192;
    fn new() -> Self {
        StreamHash { buf: Vec::with_capacity(Self::BLOCK), h: std::hash::DefaultHasher::new(), len: 0 }
    }
    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let n = (Self::BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == Self::BLOCK {
                self.h.write(&self.buf);
                self.buf.clear();
            }
        }
    }
    fn finish(mut self) -> (u64, u64) {
        self.h.write(&self.buf);
        self.h.write_u64(self.len);
        (self.len, self.h.finish())
    }
}

/// A reader that generates `len` deterministic pseudo-random bytes (byte `i` is a
/// function of `i` and the seed) and hashes what it hands out. It returns short
/// reads of odd sizes to exercise the engine's refill loop.
struct Generator {
    seed: u64,
    pos: u64,
    len: u64,
    hash: StreamHash,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    fn new(seed: u64, len: u64) -> Self {
        Generator { seed, pos: 0, len, hash: StreamHash::new() }
    }
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len - self.pos).min(100_003) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + i as u64;
            *b = (splitmix(self.seed ^ (p / 8)) >> ((p % 8) * 8)) as u8;
        }
        self.hash.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A writer that only hashes what it receives.
struct HashWriter(StreamHash);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}
fn date(s: &str) -> Value {
    Value::Date(Date::parse(s).unwrap())
}
fn dt(s: &str) -> Value {
    Value::DateTime(DateTime::parse(s).unwrap())
}
fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}
fn group(items: &[(&str, Value)]) -> Value {
    Value::Group(items.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect())
}

/// Scalars of every type, with edge values.
fn scalar_doc() -> NewDocument {
    NewDocument::new(PATIENT, "Observation")
        .unwrap()
        .with("text_unicode", text("Hämoglobin A1c — 日本語 \u{1F489} \"quoted\" \\ \n\t\u{0}end"))
        .with("text_empty", text(""))
        .with("int_min", Value::Integer(i64::MIN))
        .with("int_max", Value::Integer(i64::MAX))
        .with("int_zero", Value::Integer(0))
        .with("int_neg", Value::Integer(-1))
        .with("value", dec("6.80"))
        .with("dec_neg", dec("-12.340"))
        .with("dec_small", dec("0.10"))
        .with("dec_int", dec("100"))
        .with("dec_max", dec("79228162514264337593543950335"))
        .with("dec_tiny", dec("0.0000000000000000000000000001"))
        .with("dec_zero_scaled", dec("0.000"))
        .with("bool_true", Value::Boolean(true))
        .with("bool_false", Value::Boolean(false))
        .with("date_leap", date("2024-02-29"))
        .with("date_pre_epoch", date("1969-12-31"))
        .with("date_old", date("1900-01-01"))
        .with("date_far", date("9999-12-31"))
        .with("effective", dt("2024-03-01T09:30:00.123456-05:00"))
        .with("dt_utc", dt("2024-03-01T09:30:00Z"))
        .with("dt_plus14", dt("2024-03-01T23:59:59.999999+14:00"))
        .with("dt_nepal_pre_epoch", dt("1969-07-20T20:17:40+05:45"))
        .with("code", Value::from(Coding::new("loinc", "4548-4", Some("Hemoglobin A1c/Hemoglobin.total in Blood"))))
        .with("code_no_display", Value::from(Coding::new("http://snomed.info/sct", "44054006", None)))
        .with("code_unicode", Value::from(Coding::new("icd10cm", "E11.65", Some("Diabète de type 2 — hyperglycémie"))))
}

/// Nested lists and groups, and per-field extra labels (several label groups).
fn nested_doc() -> NewDocument {
    let mut deep = Value::Integer(42);
    for i in 0..30 {
        deep = if i % 2 == 0 { Value::List(vec![deep]) } else { group(&[("d", deep)]) };
    }
    NewDocument::new(PATIENT, "Observation")
        .unwrap()
        .with(
            "component",
            Value::List(vec![
                Value::Integer(1),
                text("two"),
                Value::List(vec![]),
                group(&[]),
                group(&[
                    ("value", dec("1.50")),
                    ("when", dt("2023-11-05T01:30:00-04:00")),
                    (
                        "codes",
                        Value::List(vec![
                            Value::from(Coding::new("rxnorm", "860975", Some("metformin"))),
                            date("2020-01-01"),
                        ]),
                    ),
                    (
                        "inner",
                        group(&[
                            ("flag", Value::Boolean(false)),
                            ("list", Value::List(vec![Value::List(vec![dec("-0.5")])])),
                        ]),
                    ),
                ]),
                Value::List(vec![Value::List(vec![Value::Boolean(true), Value::Integer(-7)])]),
            ]),
        )
        .with("deep", deep)
        .with_labeled("hiv_result", text("reactive"), vec![Label::hiv_sti()])
        .with_labeled(
            "genome",
            group(&[("brca1", text("c.68_69delAG")), ("zygosity", text("het"))]),
            vec![Label::genetic(), Label::reproductive()],
        )
        .with_labeled("mood", Value::List(vec![Value::Integer(3), Value::Integer(4)]), vec![Label::mental_health()])
        .with("note", text("restricted by the schema"))
}

/// Streams `len` generated bytes into the batch; returns the reference and the
/// (length, hash) of what the generator produced.
fn gen_ref(b: &mut SessionBatch<'_>, seed: u64, len: u64, content_type: &str) -> (AttachmentRef, (u64, u64)) {
    let mut g = Generator::new(seed, len);
    let a = b.put_attachment(content_type, &mut g).unwrap();
    assert_eq!(g.pos, len, "the whole stream was consumed");
    (a, g.hash.finish())
}

fn expected(id: DocumentId, version: u32, doc: &NewDocument) -> Expected {
    Expected {
        id,
        patient: doc.patient.clone(),
        kind: doc.kind.to_string(),
        version,
        author: "dr".into(),
        fields: doc.fields.clone(),
    }
}

fn attachment_of(fields: &BTreeMap<String, Field>, name: &str) -> AttachmentRef {
    match &fields[name].value {
        Value::Attachment(a) => (**a).clone(),
        other => panic!("{name} is {other:?}"),
    }
}

/// Streams every attachment back and compares length and hash with what went in.
fn check_attachments(
    vault: &Vault,
    id: &DocumentId,
    doc_fields: &BTreeMap<String, Field>,
    want: &BTreeMap<String, (u64, u64)>,
    ctx: &str,
) {
    let s = vault.session(physician([PATIENT])).unwrap();
    for (name, &(len, hash)) in want {
        if let Some(field) = name.strip_prefix("nested:") {
            // Attachments inside a group are read through the engine's reference.
            let Value::Group(g) = &doc_fields[field].value else { panic!("{field} is not a group") };
            let Value::Attachment(a) = &g["file"] else { panic!("no nested attachment") };
            let mut w = HashWriter(StreamHash::new());
            assert_eq!(vault.store().read_attachment(a, &mut w).unwrap(), len, "{ctx}: {name} length");
            assert_eq!(w.0.finish(), (len, hash), "{ctx}: {name} content");
            continue;
        }
        let mut w = HashWriter(StreamHash::new());
        let n = s.read_attachment(id, name, &mut w).unwrap();
        assert_eq!(n, len, "{ctx}: {name} length");
        assert_eq!(w.0.finish(), (len, hash), "{ctx}: {name} content");
        assert_eq!(attachment_of(doc_fields, name).size, len, "{ctx}: {name} size in the reference");
    }
}

#[test]
fn every_value_type_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.cv");
    let vault = Vault::create(&path, VaultKey::Raw(&key()), opts()).unwrap();
    let dr = vault.session(physician([PATIENT])).unwrap();

    // Documents of scalar and nested values.
    let scalars = scalar_doc();
    let nested = nested_doc();
    let patient_doc = NewDocument::new(PATIENT, "Patient")
        .unwrap()
        .with(
            "name",
            group(&[("family", text("Ó Briain")), ("given", Value::List(vec![text("Siobhán"), text("Ann")]))]),
        )
        .with("birthDate", date("1950-06-15"));
    let custom =
        NewDocument::new(PATIENT, "Wearable").unwrap().with("steps", Value::Integer(12_345)).with("hr", dec("61.0"));
    let mut exp = Vec::new();
    for d in [&scalars, &nested, &patient_doc, &custom] {
        let id = dr.put(d).unwrap();
        exp.push(expected(id, 1, d));
    }

    // Attachments: 64 MiB streamed from a generator, an empty one, one just past a
    // chunk boundary, and one nested in a group, all in one batch with their document.
    let mut want_att: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut b = dr.batch().unwrap();
    let (big, big_h) = gen_ref(&mut b, 1, BIG, "application/dicom");
    let (empty, empty_h) = gen_ref(&mut b, 2, 0, "text/plain");
    let (edge, edge_h) = gen_ref(&mut b, 3, 1024 * 1024 + 1, "application/pdf");
    let (small, small_h) = gen_ref(&mut b, 4, 3, "image/png");
    assert_eq!(big.size, BIG);
    let att_doc = NewDocument::new(PATIENT, "DocumentReference")
        .unwrap()
        .with("scan", Value::from(big))
        .with("empty", Value::from(empty))
        .with("edge", Value::from(edge))
        .with("bundle", group(&[("file", Value::from(small)), ("caption", text("thumbnail"))]))
        .with("date", date("2024-03-02"));
    let att_id = b.put(&att_doc).unwrap();
    b.commit().unwrap();
    want_att.insert("scan".into(), big_h);
    want_att.insert("empty".into(), empty_h);
    want_att.insert("edge".into(), edge_h);
    want_att.insert("nested:bundle".into(), small_h);
    let att_exp = expected(att_id, 1, &att_doc);

    // A new version with the same values: both versions read back exactly.
    let v2 = dr.update(&exp[0].id, scalars.fields.clone()).unwrap();
    assert_eq!(v2, 2);
    let scalars_v2 = Expected { version: 2, ..exp[0].clone() };

    let check_all = |vault: &Vault, ctx: &str| {
        let s = vault.session(physician([PATIENT])).unwrap();
        assert_doc(&s.get(&exp[0].id).unwrap(), &scalars_v2, ctx);
        assert_doc(&s.get_version(&exp[0].id, 1).unwrap(), &exp[0], ctx);
        for e in &exp[1..] {
            assert_doc(&s.get(&e.id).unwrap(), e, ctx);
        }
        assert_doc(&s.get(&att_id).unwrap(), &att_exp, ctx);
        let chart = s.chart(PATIENT).unwrap();
        assert_eq!(chart.len(), exp.len() + 1, "{ctx}: chart size");
        // Exactness beyond PartialEq: the decimal keeps its scale, the datetime its offset.
        let d = s.get(&exp[0].id).unwrap();
        match d.get("value") {
            Some(Value::Decimal(x)) => {
                assert_eq!(x.to_string(), "6.80", "{ctx}");
                assert_eq!(x.scale(), 2, "{ctx}");
            }
            other => panic!("{ctx}: value is {other:?}"),
        }
        match d.get("effective") {
            Some(Value::DateTime(t)) => {
                assert!(t.to_string().ends_with("-05:00"), "{ctx}: offset lost: {t}");
                assert_eq!(*t, DateTime::parse("2024-03-01T14:30:00.123456Z").unwrap(), "{ctx}: instant");
            }
            other => panic!("{ctx}: effective is {other:?}"),
        }
        match d.get("dt_nepal_pre_epoch") {
            Some(Value::DateTime(t)) => assert!(t.to_string().ends_with("+05:45"), "{ctx}: offset lost: {t}"),
            other => panic!("{ctx}: dt_nepal_pre_epoch is {other:?}"),
        }
        let n = s.get(&exp[1].id).unwrap();
        assert_eq!(n.fields["genome"].labels, vec![Label::genetic(), Label::reproductive()], "{ctx}: extra labels");
        assert_eq!(n.fields["hiv_result"].labels, vec![Label::hiv_sti()], "{ctx}: extra labels");
        assert!(n.fields["note"].labels.is_empty(), "{ctx}");
        check_attachments(vault, &att_id, &att_exp.fields, &want_att, ctx);
    };

    check_all(&vault, "same handle");
    drop(dr);
    vault.close().unwrap();

    let vault = Vault::open(&path, VaultKey::Raw(&key()), opts()).unwrap();
    check_all(&vault, "after reopen");
    let rep = vault.verify().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
    assert_eq!(rep.attachment_chunks, 64 + 1 + 2 + 1, "every chunk of every attachment verified");
    vault.close().unwrap();

    let ro = Vault::open(&path, VaultKey::Raw(&key()), opts_ro()).unwrap();
    check_all(&ro, "read-only reopen");
}
