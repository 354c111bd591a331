//! Helpers shared by the end-to-end tests: running `cairn` with readable
//! failures, a temporary datastore, and small JSON accessors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A `cairn` command bound to the datastore `ds`, with the environment
/// variables that would override the test's choices removed, and its state
/// directory (the policy cache key) `state` beside the datastore.
pub fn cairn(ds: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for var in [
        "CAIRN_DATASTORE",
        "CAIRN_LOG",
        "CAIRN_SERVER",
        "CAIRN_TOKEN",
        "CAIRN_FINGERPRINT",
        "STATE_DIRECTORY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_STATE_HOME", ds.parent().unwrap_or(Path::new("/")).join("state"));
    cmd.arg("--datastore").arg(ds);
    cmd
}

/// Block until the log file at `path` holds `needle`; fail after two
/// minutes, showing the log.
pub fn until_logged(path: &Path, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let log = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        if log.contains(needle) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no \"{needle}\" in the log:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A finished command: exit code and captured output.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The last non-empty line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
    }
}

fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("cairn {}", args.join(" "))
}

/// Runs `cmd` to completion; only fails if it cannot be started.
pub fn run(cmd: &mut Command) -> Run {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` and asserts its exit code, printing both streams otherwise.
pub fn run_code(cmd: &mut Command, code: i32) -> Run {
    let r = run(cmd);
    assert_eq!(
        r.code,
        code,
        "{} exited {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
        describe(cmd),
        r.code,
        r.stdout,
        r.stderr
    );
    r
}

/// Runs `cmd`, asserts exit 0 and returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    run_code(cmd, 0).stdout
}

/// Parses command output as JSON: the whole of stdout, or else its last
/// non-empty line (commands may print progress before the JSON line).
pub fn parse_json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .or_else(|_| serde_json::from_str(r.last_line()))
        .unwrap_or_else(|e| panic!("output is not JSON ({e}):\n{}\n--- stderr\n{}", r.stdout, r.stderr))
}

/// Runs `cmd`, asserts exit 0 and parses its JSON output.
pub fn run_json(cmd: &mut Command) -> Value {
    parse_json(&run_code(cmd, 0))
}

/// A string field of a JSON object, panicking with the object if absent.
pub fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// An unsigned number field of a JSON object, panicking if absent.
pub fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// A count that the spec gives as a number; an array counts its members.
pub fn count_of(v: &Value, key: &str) -> u64 {
    match &v[key] {
        Value::Array(items) => items.len() as u64,
        other => other.as_u64().unwrap_or_else(|| panic!("no count {key:?} in {v}")),
    }
}

/// A temporary directory holding an initialised datastore at `ds` and room
/// for sources and restores beside it.
pub struct Store {
    pub tmp: TempDir,
    pub ds: PathBuf,
}

impl Store {
    pub fn new() -> Store {
        let tmp = TempDir::new().expect("tempdir");
        let ds = tmp.path().join("ds");
        run_ok(cairn(&ds).arg("init"));
        Store { tmp, ds }
    }

    /// A new file beside the datastore to take a background command's
    /// output, so a full pipe can never stall it.
    pub fn log(&self, name: &str) -> Stdio {
        Stdio::from(std::fs::File::create(self.path(name)).expect("create log file"))
    }

    /// A path beside the datastore.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        cairn(&self.ds)
    }

    /// Backs up `sources` into `group` at `time` (RFC 3339) with extra
    /// arguments; returns the snapshot id (the last stdout line).
    pub fn backup_with(&self, sources: &[&Path], group: &str, time: &str, extra: &[&str]) -> String {
        let out = run_ok(
            self.cmd().arg("backup").args(sources).args(["--group", group, "--time", time]).args(extra),
        );
        let id = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
        assert!(id.contains(time), "backup printed {id:?}, not a snapshot id at {time}");
        id
    }

    pub fn backup(&self, source: &Path, group: &str, time: &str) -> String {
        self.backup_with(&[source], group, time, &[])
    }

    /// `backup --json`: the summary object.
    pub fn backup_json(&self, source: &Path, group: &str, time: &str) -> Value {
        let r = run_code(
            self.cmd().arg("backup").arg(source).args(["--group", group, "--time", time, "--json"]),
            0,
        );
        parse_json(&r)
    }

    /// `snapshots --json`, oldest first.
    pub fn snapshots(&self) -> Vec<Value> {
        match run_json(self.cmd().args(["snapshots", "--json"])) {
            Value::Array(items) => items,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// The `snapshots --json` entry of `id`.
    pub fn snapshot(&self, id: &str) -> Value {
        let all = self.snapshots();
        all.iter().find(|s| s["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not in {all:?}"))
    }

    /// Restores `id` to `target` with extra arguments, asserting success.
    pub fn restore(&self, id: &str, target: &Path, extra: &[&str]) {
        run_ok(self.cmd().arg("restore").arg(id).arg(target).args(extra));
    }
}

/// Asserts `compare_trees(a, b)` is empty, listing the differences otherwise.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = testkit::compare_trees(a, b);
    assert!(
        diffs.is_empty(),
        "{} differs from {} in {} ways:\n{}",
        b.display(),
        a.display(),
        diffs.len(),
        diffs.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// A small tmpfs mounted on `dir` for the life of the value.
pub struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    pub fn mount(dir: &'a Path, size_mib: u64) -> Tmpfs<'a> {
        Self::mount_with(dir, size_mib, "")
    }

    /// With extra mount options, e.g. `strictatime` (every read updates atime).
    pub fn mount_with(dir: &'a Path, size_mib: u64, options: &str) -> Tmpfs<'a> {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let mut opts = format!("size={size_mib}m");
        if !options.is_empty() {
            opts = format!("{opts},{options}");
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// `cairn` run as the unprivileged user 65534 with no groups.
pub fn as_nobody(ds: &Path) -> Command {
    let plain = cairn(ds);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(plain.get_program())
        .args(plain.get_args());
    cmd.env_remove("CAIRN_DATASTORE").env_remove("CAIRN_LOG");
    cmd
}

/// A temporary directory readable by all, holding a datastore `ds` that
/// belongs to user 65534 (for `as_nobody`).
pub fn nobody_store() -> (TempDir, PathBuf) {
    use std::os::unix::fs::{PermissionsExt, chown};
    let tmp = TempDir::new().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
    let ds = tmp.path().join("ds");
    std::fs::create_dir(&ds).expect("mkdir ds");
    chown(&ds, Some(65534), Some(65534)).expect("chown ds");
    run_ok(as_nobody(&ds).arg("init"));
    (tmp, ds)
}

/// The manifest of the snapshot `group`/`time` in datastore `ds`, as JSON.
pub fn manifest(ds: &Path, group: &str, time: &str) -> Value {
    let path = ds.join("snapshots").join(group).join(time).join("manifest.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("manifest JSON")
}
