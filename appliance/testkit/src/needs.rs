//! Tests that need more than `cargo test`: root (device nodes, files owned
//! by other users, loop devices, mounts, `setpriv`), Chromium (the
//! dashboard's browser test), componentize-py (the Python example
//! policies), Bacula's `bls` and `bextract` (volumes read back by
//! Bacula) or the appliance image's tools and QEMU. Each runs only when its variable asks for it, so that a plain
//! `cargo test --workspace` passes for a contributor without them;
//! `scripts/test-all.sh` sets `CAIRN_TEST_ALL=1`, which asks for all.
//!
//! ```ignore
//! if !testkit::needs(Need::Root) {
//!     return;
//! }
//! ```

use std::io::Write;

/// What a test needs beyond `cargo test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root: `CAIRN_TEST_ROOT=1`.
    Root,
    /// Chromium and chromedriver: `CAIRN_TEST_BROWSER=1`.
    Browser,
    /// componentize-py (and the Python example policies it builds):
    /// `CAIRN_TEST_PYTHON=1`.
    Python,
    /// Bacula's `bls` and `bextract` (Debian's bacula-sd), see
    /// [`crate::bacula`]: `CAIRN_TEST_BACULA=1`.
    Bacula,
    /// The appliance image's builder and a VM to boot it in (mmdebstrap,
    /// mtools, systemd-boot-efi, QEMU with OVMF), and root:
    /// `CAIRN_TEST_IMAGE=1`.
    Image,
    /// Garage, the S3-compatible object store, see [`crate::garage`]:
    /// `CAIRN_TEST_GARAGE=1`.
    Garage,
}

/// Asks for every [`Need`] at once.
pub const ALL_VAR: &str = "CAIRN_TEST_ALL";

impl Need {
    /// The environment variable that asks for the tests with this need.
    pub fn var(self) -> &'static str {
        match self {
            Need::Root => "CAIRN_TEST_ROOT",
            Need::Browser => "CAIRN_TEST_BROWSER",
            Need::Python => "CAIRN_TEST_PYTHON",
            Need::Bacula => "CAIRN_TEST_BACULA",
            Need::Image => "CAIRN_TEST_IMAGE",
            Need::Garage => "CAIRN_TEST_GARAGE",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Browser => "Chromium",
            Need::Python => "componentize-py",
            Need::Bacula => "Bacula's bls and bextract",
            Need::Image => "mmdebstrap, QEMU and OVMF (the appliance image)",
            Need::Garage => "Garage (an S3 object store)",
        }
    }

    /// Whether its variable (or [`ALL_VAR`]) is set, to anything but empty
    /// or `0`.
    pub fn wanted(self) -> bool {
        [self.var(), ALL_VAR]
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0"))
    }
}

/// Whether a test that needs `need` runs. When its variable is set, true:
/// the test runs, and fails as loudly as ever if the tool is missing. When
/// not, false, after one line on stderr saying what was skipped (the test,
/// when the harness named its thread) and how to run it: the test returns
/// early and passes. The line goes to stderr itself, not through the
/// harness's capture, so that `cargo test` shows it.
pub fn needs(need: Need) -> bool {
    if need.wanted() {
        return true;
    }
    let line = format!("skipped: needs {} (set {}=1 or run scripts/test-all.sh)", need.what(), need.var());
    let mut err = std::io::stderr().lock();
    let _ = match std::thread::current().name() {
        Some(test) if test != "main" => writeln!(err, "{test}: {line}"),
        _ => writeln!(err, "{line}"),
    };
    false
}
