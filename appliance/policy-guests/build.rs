//! Build the example policies (`policies/`) and the hostile test guests
//! (`tests/guests/`) for `wasm32-wasip2`, each workspace with its own
//! target directory under OUT_DIR (sharing the outer one would deadlock on
//! its lock), and the Python example policies (`policies-py/`) with
//! componentize-py. Needs `rustup target add wasm32-wasip2`, and for the
//! Python examples `pip install componentize-py==0.25.1` (see
//! [`COMPONENTIZE_PY`]): they are built only when `CAIRN_TEST_PYTHON=1` or
//! `CAIRN_TEST_ALL=1` asks for the tests that use them (testkit's
//! `Need::Python`; `scripts/test-all.sh` sets `CAIRN_TEST_ALL`), so that
//! the workspace builds without componentize-py.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..").canonicalize().expect("repository root");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The Rust examples share the built-in rules with the host through
    // the `model` crate: a change there must rebuild them.
    for shared in ["appliance/model/src", "appliance/model/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(shared).display());
    }
    for (workspace, var) in [("policies", "CAIRN_POLICIES_WASM"), ("tests/guests", "CAIRN_TEST_GUESTS_WASM")]
    {
        let dir = root.join(workspace);
        watch(&dir);
        let target = out.join(workspace.replace('/', "-"));
        build(&dir, &target);
        let wasm = target.join("wasm32-wasip2/release");
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
    println!("cargo:rerun-if-changed={}", manifest.join("build.rs").display());
    let python = out.join("policies-py");
    if python_wanted() {
        build_python(&root, &python);
    } else {
        std::fs::create_dir_all(&python).expect("create the output directory");
    }
    println!("cargo:rustc-env=CAIRN_PYTHON_POLICIES_WASM={}", python.display());
}

/// Whether the tests that use the Python examples are asked for (the same
/// rule as testkit's `needs(Need::Python)`, which this build script cannot
/// link: set to anything but empty or `0`).
fn python_wanted() -> bool {
    let vars = ["CAIRN_TEST_PYTHON", "CAIRN_TEST_ALL"];
    for var in vars {
        println!("cargo:rerun-if-env-changed={var}");
    }
    vars.iter().any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// The componentize-py release the Python examples are built and measured
/// with (`scripts/test-all.sh` installs the same).
const COMPONENTIZE_PY: &str = "0.25.1";

/// The Python examples under `policies-py/`, with the world each targets.
/// Each directory holds one module named like the directory with
/// underscores (`retention_recent.py`), whose `WitWorld` class implements
/// the world's exports.
const PYTHON_POLICIES: &[(&str, &str)] = &[("retention-recent", "retention")];

/// Build each Python example into `out/NAME.wasm` (underscores, like the
/// Rust ones) with the `componentize-py` on the PATH, or the one the
/// `COMPONENTIZE_PY` variable names. Only the `.py` files are watched: the
/// README and `cases/` are read by the tests, not built in.
fn build_python(root: &Path, out: &Path) {
    let tool = std::env::var_os("COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into());
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    let install = format!("pip install componentize-py=={COMPONENTIZE_PY}");
    let version = match Command::new(&tool).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => panic!(
            "`componentize-py --version` failed ({}): {}; reinstall it with `{install}`",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "componentize-py is needed to build the Python example policies in policies-py/ \
             and was not found ({e}); install it with `{install}` (scripts/test-all.sh does)"
        ),
    };
    if version.split_whitespace().last() != Some(COMPONENTIZE_PY) {
        println!(
            "cargo:warning=found {version}; the Python examples are tested with componentize-py \
             {COMPONENTIZE_PY} (`{install}`)"
        );
    }
    std::fs::create_dir_all(out).expect("create the output directory");
    // componentize-py adds the site-packages of an active virtual
    // environment, else those of the machine's Python, to the module path
    // it imports from while it builds. An empty environment of our own
    // keeps whatever is installed here out of the component.
    let env = out.join("empty-venv");
    std::fs::create_dir_all(env.join("lib/site-packages")).expect("create the empty environment");
    for (name, world) in PYTHON_POLICIES {
        let module = name.replace('-', "_");
        let dir = root.join("policies-py").join(name);
        // Build from a copy: Python leaves `__pycache__` next to the
        // sources it imports.
        let src = out.join("src").join(name);
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).expect("create the source copy");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "py") {
                println!("cargo:rerun-if-changed={}", path.display());
                std::fs::copy(&path, src.join(path.file_name().expect("file name")))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
            }
        }
        assert!(src.join(format!("{module}.py")).is_file(), "no {module}.py in {}", dir.display());
        let wasm = out.join(format!("{module}.wasm"));
        let status = Command::new(&tool)
            .arg("--quiet")
            .arg("--wit-path")
            .arg(root.join("wit"))
            .args(["--world", world, "componentize", "--python-path"])
            .arg(&src)
            .arg("--output")
            .arg(&wasm)
            .arg(&module)
            .env("VIRTUAL_ENV", &env)
            .status()
            .expect("run componentize-py");
        assert!(status.success(), "componentize-py failed on {} ({status})", dir.display());
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
        // Code the members share with `include!` (tests/guests/misbehave.rs).
        if p.extension().is_some_and(|e| e == "rs") {
            println!("cargo:rerun-if-changed={}", p.display());
        }
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
