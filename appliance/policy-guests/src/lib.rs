//! Where the test suite finds WebAssembly components built from source by
//! this crate's build script: the example policies of `policies/`, the
//! hostile guests of `tests/guests/` and the Python examples of
//! `policies-py/`.

use std::path::PathBuf;

/// An example policy from `policies/`, by crate name (`retention-gfs`).
pub fn example(name: &str) -> PathBuf {
    component(env!("CAIRN_POLICIES_WASM"), name)
}

/// A test guest from `tests/guests/`, by crate name (`hostile-retention`).
pub fn test_guest(name: &str) -> PathBuf {
    component(env!("CAIRN_TEST_GUESTS_WASM"), name)
}

fn component(dir: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(dir).join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no component {} (built by policy-guests' build script)", path.display());
    path
}

/// The repository's `policies/` directory (for the examples' `cases/`).
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// An example policy written in Python, from `policies-py/`, by directory
/// name (`retention-recent`). Built only when `CAIRN_TEST_PYTHON=1` or
/// `CAIRN_TEST_ALL=1` was set for the build (tests that use it check
/// `testkit::needs(Need::Python)` first).
pub fn python_example(name: &str) -> PathBuf {
    let dir = env!("CAIRN_PYTHON_POLICIES_WASM");
    let path = PathBuf::from(dir).join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "no component {} (the Python examples are built only with CAIRN_TEST_PYTHON=1 or CAIRN_TEST_ALL=1)",
        path.display()
    );
    path
}

/// The repository's `policies-py/` directory (for the examples' `cases/`).
pub fn python_policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies-py")
}
