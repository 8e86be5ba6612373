//! Compiles tests/c/test_api.c (and the README's C example) with the system C compiler
//! (`-Wall -Wextra -Werror`) against the static library, and runs them under valgrind:
//! every check must pass with zero memory errors and zero leaks.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf()
}

/// `cargo test` links integration tests against the rlib and does not refresh the
/// staticlib, so build it explicitly (a no-op when it is up to date).
fn build_static_lib() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let profile_release = target_dir().ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        // The system allocator, so that valgrind sees (and leak-checks) every
        // allocation; the default build's mimalloc keeps its own pages.
        cmd.args(["build", "-p", "chartvault-ffi", "--lib", "--no-default-features"]);
        if profile_release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the static library");
        assert!(status.success(), "building libchartvault.a failed");
    });
}

fn compile(src: &Path, out: &Path) {
    build_static_lib();
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = target_dir().join("libchartvault.a");
    assert!(lib.exists(), "static library not built at {}", lib.display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Wextra", "-Werror", "-g", "-O0"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(src)
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("could not run the C compiler {cc:?}: {e}"));
    assert!(status.success(), "C compilation of {} failed", src.display());
}

fn run_under_valgrind(exe: &Path, arg: &Path) {
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
        ])
        .arg(exe)
        .arg(arg)
        .output()
        .expect("valgrind must be installed (it is part of the supported build machines)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed under valgrind ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        exe.display(),
        out.status
    );
}

#[test]
fn c_program_calls_every_function_cleanly_under_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("test_api");
    compile(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/test_api.c"), &exe);
    run_under_valgrind(&exe, dir.path());
}

#[test]
fn readme_c_example_compiles_and_runs_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("example");
    compile(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/example.c"), &exe);
    run_under_valgrind(&exe, dir.path());
}
