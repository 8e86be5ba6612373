//! Runs tests/python/test_flow.py (ctypes) against the freshly built shared library.

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn python_ctypes_realistic_flow() {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "chartvault-ffi", "--lib"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    assert!(build.status().expect("cargo build").success(), "building libchartvault.so failed");
    let lib = profile_dir.join(if cfg!(target_os = "macos") { "libchartvault.dylib" } else { "libchartvault.so" });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_flow.py");
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new("python3").arg(&script).arg(&lib).arg(dir.path()).output().expect("python3 must be installed");
    assert!(
        out.status.success(),
        "python flow failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
