//! Build the example policies (`policies/`) and the hostile test guests
//! (`tests/guests/`) for `wasm32-wasip2`, each workspace with its own
//! target directory under OUT_DIR (sharing the outer one would deadlock on
//! its lock). Needs `rustup target add wasm32-wasip2`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("repository root");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for (workspace, var) in [("policies", "CAIRN_POLICIES_WASM"), ("tests/guests", "CAIRN_TEST_GUESTS_WASM")]
    {
        let dir = root.join(workspace);
        watch(&dir);
        let target = out.join(workspace.replace('/', "-"));
        build(&dir, &target);
        let wasm = target.join("wasm32-wasip2/release");
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

/// Rebuild when a manifest, lock file or source of the workspace changes.
fn watch(dir: &Path) {
    for name in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", dir.join(name).display());
    }
    let Ok(members) = std::fs::read_dir(dir) else { return };
    for m in members.flatten() {
        let p = m.path();
        if p.join("Cargo.toml").is_file() {
            println!("cargo:rerun-if-changed={}", p.join("Cargo.toml").display());
            println!("cargo:rerun-if-changed={}", p.join("src").display());
        }
    }
}

fn build(dir: &Path, target: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    // The outer build's flags are for the host, not for WebAssembly, and
    // clippy reaches builds through RUSTC_WORKSPACE_WRAPPER and CLIPPY_ARGS.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the WebAssembly guests");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed ({status}); is the target installed? \
         `rustup target add wasm32-wasip2`",
        dir.display()
    );
}
