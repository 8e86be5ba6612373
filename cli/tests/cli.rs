//! End-to-end tests of the `chartvault` command, run as a child process.
//!
//! Vaults are created with `--kdf test` (minimal Argon2 cost) so the tests are fast;
//! never use that profile for real data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value as J;

const PASS: &str = "test passphrase for the cli suite";
const DR: &[&str] = &["--user", "dr.grey", "--role", "physician", "--purpose", "TREAT", "--care-team", "MRN-7"];
const BILLING: &[&str] = &["--user", "bob", "--role", "billing", "--purpose", "HPAYMT"];
const ADMIN: &[&str] = &["--user", "sec.admin", "--role", "security-admin", "--purpose", "HSYSADMIN"];
const PO: &[&str] = &["--user", "po.rivera", "--role", "privacy-officer", "--purpose", "HCOMPL"];
const HIM: &[&str] = &["--user", "him.okoro", "--role", "him-coder", "--purpose", "PUBHLTH"];

const NOTE: &str = r#"{"patient":"MRN-7","kind":"ClinicalNote","fields":{
    "date":{"date":"2024-03-01"},"status":"final",
    "type":{"code":{"system":"loinc","code":"11506-3","display":"Progress note"}},
    "text":"Patient reports feeling better after the dose change."}}"#;

const LAB: &str = r#"{"patient":"MRN-7","kind":"Observation","fields":{
    "status":"final","code":{"code":{"system":"loinc","code":"4548-4","display":"Hemoglobin A1c"}},
    "value":6.8,"effective":{"datetime":"2024-03-01T09:30:00Z"}}}"#;

/// A temporary folder with a vault path in it.
struct Fixture {
    dir: tempfile::TempDir,
    vault: PathBuf,
}

impl Fixture {
    /// A fixture with an initialized vault.
    fn new() -> Self {
        let f = Self::empty();
        let out = f.run(&["init", f.v(), "--kdf", "test"], None);
        assert_ok(&out);
        f
    }

    /// A fixture with no vault yet.
    fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("v.cv");
        Fixture { dir, vault }
    }

    fn v(&self) -> &str {
        self.vault.to_str().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the tool with the passphrase in the environment and `stdin` as input.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_with(args, stdin, &[("CHARTVAULT_PASSPHRASE", PASS)])
    }

    /// Runs the tool and concatenates argument groups.
    fn run_as(&self, args: &[&str], who: &[&str], stdin: Option<&str>) -> Output {
        let all: Vec<&str> = args.iter().chain(who).copied().collect();
        self.run(&all, stdin)
    }

    /// Stores a document and returns its id.
    fn put(&self, json: &str) -> String {
        let out = self.run_as(&["put", self.v(), "-"], DR, Some(json));
        assert_ok(&out);
        let id = stdout(&out).trim().to_string();
        assert_eq!(id.len(), 32, "{id}");
        id
    }
}

fn run_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chartvault"));
    c.args(args).env_remove("CHARTVAULT_PASSPHRASE").env_remove("CHARTVAULT_NEW_PASSPHRASE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().expect("spawn chartvault");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o));
}

#[track_caller]
fn assert_fails(o: &Output, code: i32, message_part: &str) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(err.contains("error:"), "{err}");
    assert!(err.contains(message_part), "expected {message_part:?} in:\n{err}");
}

fn json(o: &Output) -> J {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(o)))
}

#[test]
fn init_put_get_round_trip() {
    let f = Fixture::new();
    assert!(f.vault.exists());
    assert!(Path::new(&format!("{}.keyring", f.v())).exists());
    let id = f.put(LAB);
    let out = f.run_as(&["get", f.v(), &id], DR, None);
    assert_ok(&out);
    let d = json(&out);
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["patient"], "MRN-7");
    assert_eq!(d["kind"], "Observation");
    assert_eq!(d["version"], 1);
    assert_eq!(d["author"], "dr.grey");
    assert_eq!(d["fields"]["value"]["decimal"], "6.8");
    assert_eq!(d["fields"]["code"]["code"]["code"], "4548-4");
    assert_eq!(d["fields"]["code"]["code"]["system"], "http://loinc.org");
    assert!(d.get("redacted").is_none());

    // A second init on the same path is refused.
    assert_fails(&f.run(&["init", f.v(), "--kdf", "test"], None), 1, "already exists");
}

#[test]
fn put_array_and_file_with_attachment() {
    let f = Fixture::new();
    std::fs::write(f.path("scan.bin"), b"%PDF-1.7 synthetic scan bytes").unwrap();
    let doc = r#"{"patient":"MRN-7","kind":"DiagnosticReport","fields":{"status":"final",
        "scan":{"attachment":{"content_type":"application/pdf","file":"scan.bin"}}}}"#;
    let input = f.path("docs.json");
    std::fs::write(&input, format!("[{doc}, {LAB}]")).unwrap();
    let out = f.run_as(&["put", f.v(), input.to_str().unwrap()], DR, None);
    assert_ok(&out);
    let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2);

    let saved = f.path("out.bin");
    let out = f.run_as(&["attachment", f.v(), &ids[0], "scan", "--out", saved.to_str().unwrap()], DR, None);
    assert_ok(&out);
    assert_eq!(std::fs::read(&saved).unwrap(), b"%PDF-1.7 synthetic scan bytes");
    // Never overwrites.
    let again = f.run_as(&["attachment", f.v(), &ids[0], "scan", "--out", saved.to_str().unwrap()], DR, None);
    assert_fails(&again, 1, "already exists");
}

#[test]
fn a_failed_put_with_a_large_attachment_leaves_the_vault_clean() {
    let f = Fixture::new();
    // Larger than the writer's 4 MiB buffer, so chunks reach the file before the
    // document turns out to be invalid.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(f.path("big.bin"), &big).unwrap();
    let input = f.path("bad.json");
    std::fs::write(
        &input,
        r#"{"patient":"MRN-7","kind":"DiagnosticReport","fields":{
            "scan":{"attachment":{"content_type":"application/octet-stream","file":"big.bin"}},
            "zdate":{"date":"2024-13-45"}}}"#,
    )
    .unwrap();
    let out = f.run_as(&["put", f.v(), input.to_str().unwrap()], DR, None);
    assert_fails(&out, 1, "date");
    assert_ok(&f.run(&["verify", f.v()], None));
    assert!(std::fs::metadata(&f.vault).unwrap().len() < 1_000_000);
}

#[test]
fn update_and_history() {
    let f = Fixture::new();
    let id = f.put(NOTE);
    let new = r#"{"fields":{"date":{"date":"2024-03-01"},"status":"amended",
        "text":"Patient reports feeling much better after the dose change."}}"#;
    let out = f.run_as(&["update", f.v(), &id, "-"], DR, Some(new));
    assert_ok(&out);
    assert!(stdout(&out).contains("version 2"), "{}", stdout(&out));

    let latest = json(&f.run_as(&["get", f.v(), &id], DR, None));
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["fields"]["status"], "amended");
    assert!(latest["fields"].get("type").is_none(), "fields are replaced, not merged");
    let v1 = json(&f.run_as(&["get", f.v(), &id, "--version", "1"], DR, None));
    assert_eq!(v1["fields"]["status"], "final");

    let out = f.run_as(&["history", f.v(), &id], DR, None);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("created"), "{text}");
    assert!(text.contains("~status"), "{text}");
    assert!(text.contains("~text"), "{text}");
    assert!(text.contains("-type"), "{text}");

    let hist = json(&f.run_as(&["history", f.v(), &id, "--format", "json"], DR, None));
    assert_eq!(hist.as_array().unwrap().len(), 2);

    // Moving a document to another patient is refused and writes nothing.
    let moved = r#"{"patient":"MRN-8","kind":"ClinicalNote","fields":{"status":"final"}}"#;
    assert_fails(&f.run_as(&["update", f.v(), &id, "-"], DR, Some(moved)), 1, "another patient");
    assert_eq!(json(&f.run_as(&["get", f.v(), &id], DR, None))["version"], 2);
}

#[test]
fn verify_clean_then_detects_a_flipped_byte() {
    let f = Fixture::new();
    for i in 0..8 {
        let text = format!("note {i}: {}", "lorem ipsum dolor sit amet ".repeat(80));
        f.put(&format!(r#"{{"patient":"MRN-7","kind":"ClinicalNote","fields":{{"text":"{text}"}}}}"#));
    }
    let out = f.run(&["verify", f.v()], None);
    assert_ok(&out);
    let report = stdout(&out);
    for word in ["frames", "commits", "records", "label groups", "attachment chunks", "erased", "torn tail", "CLEAN"] {
        assert!(report.contains(word), "{word} missing in:\n{report}");
    }
    let j = json(&f.run(&["verify", f.v(), "--format", "json"], None));
    assert_eq!(j["clean"], true);
    assert!(j["records"].as_u64().unwrap() >= 8);

    // The middle of the log (the file goes on with the writer's zero reserve).
    let log_bytes = j["bytes"].as_u64().unwrap() as usize;
    assert!(j["reserve_bytes"].as_u64().unwrap() > 0);
    let mut bytes = std::fs::read(&f.vault).unwrap();
    let mid = 8192 + log_bytes / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&f.vault, &bytes).unwrap();
    let out = f.run(&["verify", f.v()], None);
    assert_eq!(out.status.code(), Some(3), "stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("not clean"), "{}", stderr(&out));
    if !stdout(&out).is_empty() {
        assert!(stdout(&out).contains("NOT CLEAN"), "{}", stdout(&out));
        assert!(stdout(&out).contains("offset"), "{}", stdout(&out));
    }
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let f = Fixture::new();
    let id = f.put(LAB);
    let args: Vec<&str> = ["get", f.v(), id.as_str()].iter().chain(DR).copied().collect();
    let out = run_with(&args, None, &[("CHARTVAULT_PASSPHRASE", "not the passphrase")]);
    assert_fails(&out, 1, "wrong passphrase or key");
    assert!(!stderr(&out).contains("not the passphrase"));
    assert!(stdout(&out).is_empty());
}

#[test]
fn no_secret_and_no_terminal_fails_instead_of_hanging() {
    let f = Fixture::new();
    let args: Vec<&str> = ["chart", f.v(), "MRN-7"].iter().chain(DR).copied().collect();
    let out = run_with(&args, None, &[]);
    assert_fails(&out, 1, "CHARTVAULT_PASSPHRASE");
}

#[test]
fn raw_key_file_unlocks_in_raw_and_hex_form() {
    let f = Fixture::empty();
    let raw: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(3)).collect();
    let raw_file = f.path("key.bin");
    std::fs::write(&raw_file, &raw).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let hex_file = f.path("key.hex");
    std::fs::write(&hex_file, format!("  {hex}\n")).unwrap();
    let out = run_with(&["init", f.v(), "--key-file", raw_file.to_str().unwrap()], None, &[]);
    assert_ok(&out);
    let out = run_with(&["verify", f.v(), "--key-file", hex_file.to_str().unwrap()], None, &[]);
    assert_ok(&out);
    assert!(!stdout(&out).contains(&hex) && !stderr(&out).contains(&hex));
    let bad = f.path("bad.key");
    std::fs::write(&bad, "too short").unwrap();
    assert_fails(&run_with(&["verify", f.v(), "--key-file", bad.to_str().unwrap()], None, &[]), 1, "32-byte key");
}

#[test]
fn session_options_are_required() {
    let f = Fixture::new();
    let out = f.run(&["chart", f.v(), "MRN-7", "--user", "dr.grey", "--purpose", "TREAT"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--role"), "{}", stderr(&out));
    let out = f.run(&["chart", f.v(), "MRN-7", "--role", "physician", "--purpose", "TREAT"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--user"), "{}", stderr(&out));
    let out = f.run(&["chart", f.v(), "MRN-7", "--user", "x", "--role", "physician"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--purpose"), "{}", stderr(&out));
    let out = f.run(&["chart", f.v(), "MRN-7", "--user", "x", "--role", "physician", "--purpose", "NOPE"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("purpose"), "{}", stderr(&out));
}

#[test]
fn billing_sees_redaction_markers() {
    let f = Fixture::new();
    let id = f.put(NOTE);
    let out = f.run_as(&["get", f.v(), &id], BILLING, None);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("redacted"), "{text}");
    assert!(!text.contains("feeling better"), "{text}");
    let d = json(&out);
    assert_eq!(d["redacted"]["text"][0], "restricted");
    assert_eq!(d["fields"]["status"], "final");
}

#[test]
fn access_is_denied_without_care_relationship_and_break_glass_opens_it() {
    let f = Fixture::new();
    f.put(NOTE);
    let er = ["--user", "dr.patel", "--role", "physician", "--purpose", "TREAT"];
    let out = f.run_as(&["chart", f.v(), "MRN-7"], &er, None);
    assert_ok(&out);
    assert!(!stdout(&out).contains("ClinicalNote"));
    let out = f.run_as(
        &["chart", f.v(), "MRN-7", "--break-glass-patient", "MRN-7", "--break-glass-reason", "unresponsive in ED"],
        &er,
        None,
    );
    assert_ok(&out);
    assert!(stdout(&out).contains("ClinicalNote"), "{}", stdout(&out));
    assert!(stderr(&out).contains("break-glass"));
    let out = f.run_as(&["break-glass", f.v(), "MRN-7", "--reason", "follow-up review"], &er, None);
    assert_ok(&out);

    let out = f.run_as(&["report", "break-glass", f.v()], PO, None);
    assert_ok(&out);
    assert!(stdout(&out).contains("unresponsive in ED"), "{}", stdout(&out));
    let j = json(&f.run_as(&["report", "break-glass", f.v(), "--format", "json"], PO, None));
    assert_eq!(j["requests"].as_array().unwrap().len(), 2);
    assert!(!j["accesses"].as_array().unwrap().is_empty());

    let j = json(&f.run_as(&["report", "access", f.v(), "--patient", "MRN-7", "--format", "json"], PO, None));
    assert!(j["accesses"].as_array().unwrap().iter().any(|a| a["outcome"] == "denied"));
}

#[test]
fn policy_show_and_load_round_trip() {
    let f = Fixture::new();
    let out = f.run_as(&["policy", "show", f.v()], ADMIN, None);
    assert_ok(&out);
    let mut p = json(&out);
    assert_eq!(p["version"], 1);
    let file = f.path("policy.json");
    std::fs::write(&file, stdout(&out)).unwrap();
    let out = f.run_as(&["policy", "load", f.v(), file.to_str().unwrap()], ADMIN, None);
    assert_ok(&out);
    assert!(stdout(&out).contains("version 2"), "{}", stdout(&out));
    let mut p2 = json(&f.run_as(&["policy", "show", f.v()], ADMIN, None));
    assert_eq!(p2["version"], 2);
    p["version"] = J::Null;
    p2["version"] = J::Null;
    assert_eq!(p, p2);

    // A billing clerk may neither read nor change the policy.
    assert_fails(&f.run_as(&["policy", "show", f.v()], BILLING, None), 1, "access denied");
    // An invalid policy is refused with a clear message.
    std::fs::write(
        &file,
        r#"{"name":"x","grants":[{"roles":["physician"],"purposes":["TREAT"],"operations":["fly"]}]}"#,
    )
    .unwrap();
    assert_fails(&f.run_as(&["policy", "load", f.v(), file.to_str().unwrap()], ADMIN, None), 1, "invalid policy");
}

#[test]
fn consent_set_and_show() {
    let f = Fixture::new();
    let id = f.put(NOTE);
    let rules = f.path("rules.json");
    std::fs::write(
        &rules,
        format!(
            r#"{{"patient":"MRN-7","vip":true,"self_pay":["{id}"],
               "part2_consents":[{{"organization":"general-hospital","purposes":["TREAT"]}}]}}"#
        ),
    )
    .unwrap();
    let out = f.run_as(&["consent", "set", f.v(), rules.to_str().unwrap()], PO, None);
    assert_ok(&out);
    let shown = json(&f.run_as(&["consent", "show", f.v(), "MRN-7"], PO, None));
    assert_eq!(shown["vip"], true);
    assert_eq!(shown["self_pay"][0], id.as_str());
    // Self-pay: billing may no longer read that document.
    assert_fails(&f.run_as(&["get", f.v(), &id], BILLING, None), 1, "access denied");
    // Shape errors name the key, not the value.
    std::fs::write(&rules, r#"{"patient":"MRN-7","vip":"SECRET-VALUE"}"#).unwrap();
    let out = f.run_as(&["consent", "set", f.v(), rules.to_str().unwrap()], PO, None);
    assert_fails(&out, 1, "expected a boolean");
    assert!(!stderr(&out).contains("SECRET-VALUE"));
}

#[test]
fn keys_add_list_remove() {
    let f = Fixture::new();
    let out = f.run(&["keys", "list", f.v()], None);
    assert_ok(&out);
    assert!(stdout(&out).contains("passphrase"));
    let key = f.path("k.hex");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let args: Vec<&str> = ["keys", "add", f.v(), "--new-key-file", key.to_str().unwrap(), "--kdf", "test"]
        .iter()
        .chain(ADMIN)
        .copied()
        .collect();
    let out = f.run(&args, None);
    assert_ok(&out);
    assert!(stdout(&out).contains("slot 1"), "{}", stdout(&out));
    let out = run_with(&["keys", "list", f.v(), "--key-file", key.to_str().unwrap()], None, &[]);
    assert_ok(&out);
    assert!(stdout(&out).contains("raw-key"), "{}", stdout(&out));
    // Only an administrator may change slots.
    let args: Vec<&str> = ["keys", "remove", f.v(), "--slot", "1"].iter().chain(DR).copied().collect();
    assert_fails(&f.run(&args, None), 1, "access denied");
    let args: Vec<&str> = ["keys", "remove", f.v(), "--slot", "1"].iter().chain(ADMIN).copied().collect();
    assert_ok(&f.run(&args, None));
    assert_fails(
        &run_with(&["keys", "list", f.v(), "--key-file", key.to_str().unwrap()], None, &[]),
        1,
        "wrong passphrase or key",
    );
}

#[test]
fn audit_verify_is_intact() {
    let f = Fixture::new();
    let id = f.put(NOTE);
    assert_ok(&f.run_as(&["get", f.v(), &id], BILLING, None));
    let out = f.run_as(&["audit", "verify", f.v()], PO, None);
    assert_ok(&out);
    assert!(stdout(&out).contains("INTACT"), "{}", stdout(&out));
    // Only roles allowed to audit may.
    assert_fails(&f.run_as(&["audit", "verify", f.v()], DR, None), 1, "access denied");
}

#[test]
fn audit_export_is_a_bundle_of_audit_events() {
    let f = Fixture::new();
    let id = f.put(NOTE);
    assert_ok(&f.run_as(&["get", f.v(), &id], DR, None));
    let out = f.run_as(&["audit", "export", f.v()], PO, None);
    assert_ok(&out);
    let b = json(&out);
    assert_eq!(b["resourceType"], "Bundle");
    let entries = b["entry"].as_array().unwrap();
    assert!(entries.len() >= 3, "{}", entries.len());
    assert!(entries.iter().all(|e| e["resource"]["resourceType"] == "AuditEvent"));
    assert!(entries.iter().any(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"] == "dr.grey"));

    let file = f.path("audit.json");
    assert_ok(&f.run_as(&["audit", "export", f.v(), "--out", file.to_str().unwrap()], PO, None));
    let from_file: J = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(from_file["resourceType"], "Bundle");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o077, 0);
    }
}

#[test]
fn report_accounting_lists_a_recorded_disclosure() {
    let f = Fixture::new();
    let id = f.put(LAB);
    let out = f.run_as(
        &[
            "disclose",
            f.v(),
            "--patient",
            "MRN-7",
            "--recipient",
            "County Public Health Department",
            "--description",
            "Reportable lab result",
            "--doc",
            &id,
        ],
        HIM,
        None,
    );
    assert_ok(&out);
    let out = f.run_as(&["report", "accounting", f.v(), "--patient", "MRN-7"], PO, None);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("ACCOUNTING OF DISCLOSURES"), "{text}");
    assert!(text.contains("County Public Health Department"), "{text}");
    assert!(text.contains("PUBHLTH"), "{text}");
    let j = json(&f.run_as(&["report", "accounting", f.v(), "--patient", "MRN-7", "--format", "json"], PO, None));
    assert_eq!(j["accountable"].as_array().unwrap().len(), 1);
    assert_eq!(j["accountable"][0]["documents"], 1);
}

#[test]
fn bad_json_input_is_a_clear_error_without_values() {
    let f = Fixture::new();
    let cases = [
        r#"{"patient":"SECRET-MRN-42","kind":"Observation","fields":{"value":{"integer":"SECRET-VALUE"}}}"#,
        r#"{"patient":"SECRET-MRN-42","kind":"Observation","fields":{"value":"SECRET-VALUE",}}"#,
        r#"{"patient":"SECRET-MRN-42","kind":"#,
        r#"{"patient":"SECRET-MRN-42","kind":"Obs ervation","fields":{"note":"SECRET-VALUE"}}"#,
        r#"["SECRET-VALUE"]"#,
    ];
    for input in cases {
        let out = f.run_as(&["put", f.v(), "-"], DR, Some(input));
        assert_eq!(out.status.code(), Some(1), "{input}\n{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains("invalid"), "{err}");
        assert!(!err.contains("SECRET"), "input echoed: {err}");
        assert!(!stdout(&out).contains("SECRET"));
    }
    // Nothing was stored.
    let out = f.run_as(&["chart", f.v(), "SECRET-MRN-42", "--format", "json"], DR, None);
    assert_eq!(json(&out), J::Array(Vec::new()));
}

#[test]
fn demo_runs_in_a_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = run_with(&["demo", demo.to_str().unwrap()], None, &[]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("demo passphrase - not for real data"), "{text}");
    assert!(text.contains("REDACTED"), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(text.contains("break-glass"), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert!(!text.contains("FOUND"), "{text}");
    assert!(demo.join("vault.cv").exists());
    // The demo vault opens with the demo passphrase, and a second demo is refused.
    let v = demo.join("vault.cv");
    let out = run_with(
        &["verify", v.to_str().unwrap()],
        None,
        &[("CHARTVAULT_PASSPHRASE", "demo passphrase - not for real data")],
    );
    assert_ok(&out);
    assert_fails(&run_with(&["demo", demo.to_str().unwrap()], None, &[]), 1, "already contains a vault");
}

#[test]
fn query_command_prints_json_lines_and_refuses_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("q.cv");
    let env = [("CHARTVAULT_PASSPHRASE", "query test passphrase")];
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_chartvault"));
        c.args(args).envs(env);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().unwrap()
    };
    let v = vault.to_str().unwrap();
    assert!(run(&["init", v, "--kdf", "test"], None).status.success());
    let dr = ["--user", "dr", "--role", "physician", "--purpose", "TREAT", "--care-team", "P1"];
    for code in ["4548-4", "2345-7"] {
        let doc = format!(
            r#"{{"patient":"P1","kind":"Observation","fields":{{"code":{{"code":{{"system":"loinc","code":"{code}"}}}}}}}}"#
        );
        let mut args = vec!["put", v, "-"];
        args.extend(dr);
        assert!(run(&args, Some(&doc)).status.success());
    }
    let mut args = vec!["query", v, "kind = Observation and code = loinc:4548-4", "--format", "json"];
    args.extend(dr);
    let out = run(&args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("4548-4") && lines[1].contains("\"total\":1"), "{text}");
    let mut args = vec!["query", v, "kind = "];
    args.extend(dr);
    let out = run(&args, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("position 7"));
}
