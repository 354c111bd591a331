//! The appliance: `cairn appliance` on a layout of plain files (signing,
//! verifying, writing the other slot, status), and the real image built by
//! `image/build.sh` and booted in QEMU with OVMF under software emulation:
//! first boot, a remote backup into it and a byte-identical restore, a
//! reboot, an update into the other slot, and a broken update that the
//! machine rolls back by itself.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::pinned_client;
use crate::support::{Store, assert_same_tree, cairn, run, run_ok};

fn cairn_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_remove("CAIRN_DATASTORE").env_remove("CAIRN_LOG");
    c
}

/// A machine made of files: ESP directory, two slot files, a command line
/// and an os-release.
struct FakeMachine {
    root: PathBuf,
}

impl FakeMachine {
    fn new(store: &Store, running: char, version: &str) -> FakeMachine {
        let root = store.path("machine");
        std::fs::create_dir_all(root.join("esp/EFI/Linux")).unwrap();
        std::fs::write(root.join(format!("esp/EFI/Linux/cairn-{version}-{running}.efi")), b"uki").unwrap();
        for s in ['a', 'b'] {
            std::fs::write(root.join(format!("slot-{s}")), vec![0u8; 8 << 20]).unwrap();
        }
        std::fs::write(root.join("cmdline"), format!("ro cairn.slot={running}\n")).unwrap();
        std::fs::write(root.join("os-release"), format!("IMAGE_VERSION={version}\n")).unwrap();
        FakeMachine { root }
    }

    fn cmd(&self) -> Command {
        let mut c = cairn_bin();
        c.arg("appliance");
        for (flag, file) in [
            ("--esp", "esp"),
            ("--slot-a", "slot-a"),
            ("--slot-b", "slot-b"),
            ("--cmdline", "cmdline"),
            ("--os-release", "os-release"),
            ("--update-key", "update.pub"),
        ] {
            c.arg(flag).arg(self.root.join(file));
        }
        c
    }
}

#[test]
fn appliance_cli_signs_checks_and_writes_the_other_slot() {
    let store = Store::new();
    let m = FakeMachine::new(&store, 'a', "1.0");
    let key = store.path("signing.key");
    let public = run_ok(cairn_bin().args(["appliance", "keygen"]).arg(&key));
    assert!(public.starts_with("cairn-update-ed25519 "), "{public}");
    assert_eq!(run_ok(cairn_bin().args(["appliance", "keygen", "--public-of"]).arg(&key)), public);
    std::fs::write(m.root.join("update.pub"), &public).unwrap();
    let r = run(cairn_bin().args(["appliance", "keygen"]).arg(&key));
    assert!(r.code != 0 && r.stderr.contains("never overwritten"), "{r:?}");

    let rootfs: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 20) as u8).collect();
    std::fs::write(store.path("rootfs"), &rootfs).unwrap();
    std::fs::write(store.path("uki-a"), b"kernel image for slot a").unwrap();
    std::fs::write(store.path("uki-b"), b"kernel image for slot b").unwrap();
    let bundle = |version: &str, key: &Path| {
        let out = store.path(&format!("{version}.bundle"));
        run_ok(
            cairn_bin()
                .args(["appliance", "bundle", "--version", version, "--key"])
                .arg(key)
                .arg("--rootfs")
                .arg(store.path("rootfs"))
                .arg("--uki-a")
                .arg(store.path("uki-a"))
                .arg("--uki-b")
                .arg(store.path("uki-b"))
                .arg("--out")
                .arg(&out),
        );
        out
    };
    let good = bundle("1.1", &key);
    let out = run_ok(m.cmd().arg("verify").arg(&good));
    assert!(out.contains("signature and every section good"), "{out}");

    // Signed by another key: refused, nothing written.
    let other = store.path("other.key");
    run_ok(cairn_bin().args(["appliance", "keygen"]).arg(&other));
    let foreign = bundle("1.2", &other);
    let r = run(m.cmd().args(["update", "--no-reboot"]).arg(&foreign));
    assert!(r.code != 0 && r.stderr.contains("not from the key this appliance trusts"), "{r:?}");
    // A byte changed in the payload: refused while checking, nothing written.
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(store.path("damaged.bundle"), &bytes).unwrap();
    let r = run(m.cmd().arg("verify").arg(store.path("damaged.bundle")));
    assert!(r.code != 0 && r.stderr.contains("uki-b") && r.stderr.contains("blake3"), "{r:?}");
    // Not a bundle at all.
    let r = run(m.cmd().arg("verify").arg(store.path("rootfs")));
    assert!(r.code != 0 && r.stderr.contains("not a Cairn update bundle"), "{r:?}");
    assert_eq!(std::fs::read(m.root.join("slot-b")).unwrap(), vec![0u8; 8 << 20]);

    // The good one goes into slot B with three tries; A is left alone.
    let out = run_ok(m.cmd().args(["update", "--no-reboot"]).arg(&good));
    assert!(out.contains("Cairn 1.1 is in slot B"), "{out}");
    assert!(std::fs::read(m.root.join("slot-b")).unwrap()[..rootfs.len()] == rootfs[..]);
    assert_eq!(std::fs::read(m.root.join("slot-a")).unwrap(), vec![0u8; 8 << 20]);
    let linux = m.root.join("esp/EFI/Linux");
    assert_eq!(std::fs::read(linux.join("cairn-1.1-b+3.efi")).unwrap(), b"kernel image for slot b");
    let status: Value = serde_json::from_str(&run_ok(m.cmd().args(["status", "--json"]))).unwrap();
    assert_eq!(status["running"], "a");
    assert_eq!(status["update"], json!({"state": "pending", "version": "1.1", "slot": "b"}));
    // After three failed boots systemd-boot leaves +0-3: a rollback.
    std::fs::rename(linux.join("cairn-1.1-b+3.efi"), linux.join("cairn-1.1-b+0-3.efi")).unwrap();
    let out = run_ok(m.cmd().arg("status"));
    assert!(out.contains("the update to 1.1 was rolled back"), "{out}");
    // The same version again is not an update.
    std::fs::write(m.root.join("os-release"), "IMAGE_VERSION=1.1\n").unwrap();
    let r = run(m.cmd().args(["update", "--no-reboot"]).arg(&good));
    assert!(r.code != 0 && r.stderr.contains("not newer than the running 1.1"), "{r:?}");
}

/// A bundle written by format 1 (tests/data/golden-bundle-v1, with its
/// public key and the files it holds): every build must read and apply it.
#[test]
fn golden_bundle_v1_verifies_and_writes_its_sections() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden-bundle-v1");
    let store = Store::new();
    let m = FakeMachine::new(&store, 'a', "0.9");
    std::fs::copy(golden.join("update.pub"), m.root.join("update.pub")).unwrap();
    let bundle = golden.join("cairn-update.bundle");
    let out = run_ok(m.cmd().arg("verify").arg(&bundle));
    assert!(out.contains("Cairn 1.0.0, signature and every section good"), "{out}");
    run_ok(m.cmd().args(["update", "--no-reboot"]).arg(&bundle));
    let rootfs = std::fs::read(golden.join("rootfs")).unwrap();
    assert_eq!(std::fs::read(m.root.join("slot-b")).unwrap()[..rootfs.len()], rootfs[..]);
    assert_eq!(
        std::fs::read(m.root.join("esp/EFI/Linux/cairn-1.0.0-b+3.efi")).unwrap(),
        std::fs::read(golden.join("uki-b")).unwrap()
    );
}

// ------------------------------------------------------------ the real image

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `image/build.sh` with the test's cairn binary; its output directory.
fn build_image(out: &Path, version: &str, extra: &[&str]) -> Duration {
    let started = Instant::now();
    let log = std::fs::File::create(out.with_extension("log")).unwrap();
    let status = Command::new("bash")
        .arg(repo().join("image/build.sh"))
        .args(["--version", version, "--cairn", env!("CARGO_BIN_EXE_cairn")])
        .args(extra)
        .arg(out)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    let took = started.elapsed();
    let log = std::fs::read_to_string(out.with_extension("log")).unwrap_or_default();
    assert!(status.success(), "image/build.sh {version} failed:\n{}", tail(&log, 60));
    took
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A QEMU virtual machine: UEFI (OVMF), TCG, the image as its first disk
/// (a qcow2 overlay, so the built image stays as it is) and an empty data
/// disk, user networking with a host port forwarded to 8007, the serial
/// console in a file.
struct Vm {
    dir: PathBuf,
    port: u16,
    /// The guest address the host port is forwarded to (QEMU's DHCP hands
    /// out 10.0.2.15).
    guest: String,
    child: Option<Child>,
    boots: usize,
    /// Machine resets after a stalled boot (see [`Vm::wait`]).
    stall_resets: usize,
}

/// How long a boot may print nothing after the firmware starts the loader.
const STALL: Duration = Duration::from_secs(180);

/// Whether the console's last line is the firmware starting the boot
/// loader: the machine handed over and nothing has printed since.
fn handed_over_silently(serial: &str) -> bool {
    serial.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.contains("BdsDxe: starting Boot"))
}

impl Vm {
    /// A copy of the raw image (sparse), so that the test can write the EFI
    /// partition between boots as an operator would before the first.
    fn new(dir: &Path, raw: &Path) -> Vm {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", dir.join("vars.fd")).unwrap();
        let s =
            Command::new("cp").arg("--sparse=always").arg(raw).arg(dir.join("disk.raw")).status().unwrap();
        assert!(s.success());
        let s = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(dir.join("data.qcow2"))
            .arg("8G")
            .status()
            .unwrap();
        assert!(s.success());
        Vm {
            dir: dir.to_owned(),
            port: free_port(),
            guest: "10.0.2.15".into(),
            child: None,
            boots: 0,
            stall_resets: 0,
        }
    }

    /// Put `name` with `text` on the EFI partition (1 MiB into the disk).
    fn write_esp(&self, name: &str, text: &str) {
        let file = self.dir.join(name);
        std::fs::write(&file, text).unwrap();
        let image = format!("{}@@1M", self.dir.join("disk.raw").display());
        let out = Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i", &image])
            .arg(&file)
            .arg(format!("::/{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "mcopy: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let d = |f: &str| self.dir.join(f).display().to_string();
        let _ = std::fs::remove_file(d("mon.sock"));
        let _ = std::fs::remove_file(d("serial.sock"));
        let child = Command::new("qemu-system-x86_64")
            // Software emulation: /dev/kvm may exist without working.
            .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
            .args(["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"])
            .args(["-drive", &format!("if=pflash,format=raw,unit=1,file={}", d("vars.fd"))])
            .args(["-drive", &format!("file={},if=virtio,format=raw", d("disk.raw"))])
            .args(["-drive", &format!("file={},if=virtio,format=qcow2", d("data.qcow2"))])
            .args(["-netdev", &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-{}:8007", self.port, self.guest)])
            .args(["-device", "virtio-net-pci,netdev=n0", "-display", "none"])
            // The serial port: a socket the test types into (the console
            // menu), everything it prints appended to serial.log.
            .args([
                "-chardev",
                &format!(
                    "socket,id=ser,path={},server=on,wait=off,logfile={},logappend=on",
                    d("serial.sock"),
                    d("serial.log")
                ),
            ])
            .args(["-serial", "chardev:ser"])
            .args(["-monitor", &format!("unix:{},server,nowait", d("mon.sock"))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d(&format!("qemu-{}.err", self.boots))).unwrap())
            .spawn()
            .expect("start qemu-system-x86_64");
        self.child = Some(child);
        self.boots += 1;
    }

    fn serial(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("serial.log")) {
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    /// How many bytes the serial console has printed (the log's length:
    /// a stall check reads no more than that each second).
    fn serial_len(&self) -> u64 {
        std::fs::metadata(self.dir.join("serial.log")).map_or(0, |m| m.len())
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Wait until `f` answers Some; the serial console's tail on timeout.
    ///
    /// A boot that stalls right after the firmware hands over (the last
    /// console line is OVMF's "starting Boot…" and nothing follows for
    /// [`STALL`], where the image's first line, the data disk's, comes
    /// within a minute even on a loaded machine) is reset once per test,
    /// with the virtual CPUs' state printed: such a stall left no output
    /// from the kernel or the image to act on, and was seen once in CI
    /// without being reproduced here. A second stall fails the test.
    fn wait<T>(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&mut Vm) -> Option<T>) -> T {
        let mut deadline = Instant::now() + timeout;
        let (mut seen, mut changed) = (self.serial_len(), Instant::now());
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("QEMU exited ({status}) while waiting for {what}:\n{}", tail(&self.serial(), 40));
            }
            let len = self.serial_len();
            if len != seen {
                (seen, changed) = (len, Instant::now());
            } else if changed.elapsed() > STALL {
                // Silent for STALL: one look at the last line, the next
                // after another STALL of silence.
                let silent = changed.elapsed();
                changed = Instant::now();
                if self.reset_if_stalled(what) {
                    deadline += silent;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {timeout:?}; serial console:\n{}",
                tail(&self.serial(), 60)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// If the console's last line is the firmware starting the loader
    /// (after [`STALL`] of silence), print the CPUs' state and reset the
    /// machine: once; a second stall fails the test.
    fn reset_if_stalled(&mut self, what: &str) -> bool {
        if !handed_over_silently(&self.serial()) {
            return false;
        }
        let cpus = self.monitor_query("info registers -a");
        let rips: Vec<&str> = cpus.lines().filter(|l| l.starts_with("RIP=")).collect();
        assert!(
            self.stall_resets == 0,
            "a second boot stalled after the firmware while waiting for {what} (no console output for \
             {STALL:?}); CPUs: {rips:?}\n{}",
            tail(&self.serial(), 20)
        );
        eprintln!(
            "STALL: no console output for {STALL:?} after the firmware started the loader, while waiting \
             for {what}; CPUs: {rips:?}; resetting the machine once"
        );
        self.stall_resets += 1;
        self.monitor("system_reset");
        true
    }

    /// Type `line` and Enter on the serial console.
    fn type_line(&self, line: &str) {
        let mut s = std::os::unix::net::UnixStream::connect(self.dir.join("serial.sock")).unwrap();
        for b in line.bytes().chain([b'\r']) {
            s.write_all(&[b]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// A monitor command's answer (what QEMU prints until it goes quiet).
    fn monitor_query(&self, command: &str) -> String {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.dir.join("mon.sock")) else {
            return "(no monitor)".into();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("{command}\n").as_bytes());
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn monitor(&self, command: &str) {
        let mut s = std::os::unix::net::UnixStream::connect(self.dir.join("mon.sock")).unwrap();
        s.write_all(format!("{command}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    /// ACPI power button, and wait for the guest to power off.
    fn power_off(&mut self) {
        self.monitor("system_powerdown");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the appliance did not power off:\n{}", tail(&self.serial(), 40));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value after `key ` on the last serial line that has it.
fn console_value(serial: &str, key: &str) -> Option<String> {
    serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key} ")))
        .next_back()
        .map(|v| v.trim().to_owned())
}

fn appliance_state(http: &reqwest::blocking::Client, vm: &Vm, token: &str) -> Option<Value> {
    let res = http
        .get(vm.url("/api/v1/appliance"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    res.status().is_success().then(|| res.json().ok()).flatten()
}

fn upload_bundle(http: &reqwest::blocking::Client, vm: &Vm, token: &str, bundle: &Path) -> Value {
    let body = std::fs::read(bundle).unwrap();
    let res = http
        .post(vm.url("/api/v1/appliance/update"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .timeout(Duration::from_secs(600))
        .send()
        .expect("upload the update bundle");
    let status = res.status();
    let text = res.text().unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_image_boots_backs_up_survives_a_reboot_updates_and_rolls_back_a_broken_update() {
    if !testkit::needs(testkit::Need::Image) {
        return;
    }
    let store = Store::new();
    let work = store.path("image");
    std::fs::create_dir_all(&work).unwrap();

    // Three builds: the image, an update, and an update whose service never
    // becomes healthy, all signed with the key the first build made.
    let (v1, v2, v3) = (work.join("v1"), work.join("v2"), work.join("v3"));
    let took = build_image(&v1, "1.0.1", &[]);
    eprintln!("FIGURE image build (tree cached if this machine built one before): {} s", took.as_secs());
    let key = v1.join("signing.key");
    let key = key.to_str().unwrap();
    build_image(&v2, "1.0.2", &["--bundle-only", "--key", key]);
    build_image(&v3, "1.0.3", &["--bundle-only", "--key", key, "--broken"]);
    let qcow = std::fs::metadata(v1.join("cairn.qcow2")).unwrap().len();
    eprintln!(
        "FIGURE cairn.qcow2: {} MiB, bundle {} MiB",
        qcow >> 20,
        std::fs::metadata(v1.join("cairn-update.bundle")).unwrap().len() >> 20
    );
    assert!(qcow <= 300 << 20, "cairn.qcow2 is {} MiB", qcow >> 20);
    let manifest = std::fs::read_to_string(v1.join("cairn.manifest")).unwrap();
    assert!(
        manifest.contains("version 1.0.1") && manifest.lines().any(|l| l.starts_with("package linux-image-")),
        "{manifest}"
    );

    // First boot: the console shows the address, the fingerprint and the
    // admin password; the API answers over the forwarded port.
    // The qcow2 is the raw disk, compressed: the same bytes.
    let same = Command::new("qemu-img")
        .arg("compare")
        .arg(v1.join("cairn.raw"))
        .arg(v1.join("cairn.qcow2"))
        .output();
    assert!(same.unwrap().status.success(), "cairn.qcow2 and cairn.raw differ");
    let mut vm = Vm::new(&work.join("vm"), &v1.join("cairn.raw"));
    let booted = Instant::now();
    vm.start();
    let (fingerprint, password) = vm.wait("the first-boot banner", Duration::from_secs(300), |vm| {
        let s = vm.serial();
        Some((console_value(&s, "fingerprint")?, console_value(&s, "password")?))
    });
    assert!(vm.serial().contains("https://10.0.2.15:8007/"), "{}", tail(&vm.serial(), 30));
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    let http = pinned_client(&fingerprint);
    vm.wait("a healthy API", Duration::from_secs(120), |vm| {
        http.get(vm.url("/healthz")).send().ok().filter(|r| r.status() == 200)
    });
    eprintln!("FIGURE first boot to a working API under TCG: {:.1} s", booted.elapsed().as_secs_f64());
    let wrong = pinned_client(&format!("{}ab", "ab:".repeat(31)));
    assert!(wrong.get(vm.url("/healthz")).send().is_err(), "a wrong pin must fail");

    // Log in with the console's password: the admin lands on the welcome
    // page, which shows the fingerprint and retires the password.
    let res = http
        .post(vm.url("/login"))
        .form(&[("user", "admin"), ("password", password.as_str()), ("next", "/")])
        .send()
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/welcome");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let welcome = http.get(vm.url("/welcome")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(welcome.contains(&format!("fingerprint {fingerprint}")), "{welcome}");
    let csrf = welcome
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token on the page")
        .to_owned();
    let token = |name: &str, role: &str, groups: &[&str]| -> String {
        let res = http
            .post(vm.url("/api/v1/tokens"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": name, "role": role, "groups": groups}))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().unwrap()["token"].as_str().unwrap().to_owned()
    };
    let admin = token("ci-admin", "admin", &[]);
    let client_token = token("ci-client", "backup-client", &["host/ci"]);

    // A remote backup from the host into the appliance, restored byte for byte.
    let src = store.path("src");
    testkit::write_random_tree(&src, 40, 3_000_000, 7);
    std::fs::write(src.join("big.bin"), (0..6_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
        .unwrap();
    let remote = |cmd: &str| {
        let mut c = cairn(&store.path("unused"));
        c.arg(cmd).args(["--server", &vm.url(""), "--fingerprint", &fingerprint, "--token", &client_token]);
        c
    };
    let out = run_ok(remote("backup").arg(&src).args(["--group", "host/ci", "--json"]));
    let snapshot = serde_json::from_str::<Value>(&out).unwrap()["id"].as_str().unwrap().to_owned();
    let restored = store.path("restored");
    run_ok(remote("restore").arg(&snapshot).arg(&restored));
    assert_same_tree(&src, &restored);

    // A reboot, with a static address from cairn-network.toml on the EFI
    // partition (as a headless install would have it): the snapshot is still
    // there, the appliance answers on its new address, and the console no
    // longer shows the password (the admin has logged in).
    vm.power_off();
    vm.write_esp(
        "cairn-network.toml",
        "mode = \"static\"\naddress = \"10.0.2.16/24\"\ngateway = \"10.0.2.2\"\ndns = [\"10.0.2.3\"]\n",
    );
    vm.guest = "10.0.2.16".into();
    let boots_before = vm.serial().matches("Cairn backup appliance").count();
    let rebooted = Instant::now();
    vm.start();
    vm.wait("the second boot's banner", Duration::from_secs(300), |vm| {
        (vm.serial().matches("Cairn backup appliance").count() > boots_before).then_some(())
    });
    let second_boot = vm.serial().rsplit("Cairn backup appliance").next().unwrap().to_owned();
    assert!(console_value(&second_boot, "password").is_none(), "{second_boot}");
    assert!(
        second_boot.contains("https://10.0.2.16:8007/") && !second_boot.contains("10.0.2.15"),
        "the static address, and only it: {second_boot}"
    );
    let snaps: Value = vm.wait("the API after the reboot", Duration::from_secs(120), |vm| {
        let r = http.get(vm.url("/api/v1/snapshots")).bearer_auth(&client_token).send().ok()?;
        r.status().is_success().then(|| r.json().ok()).flatten()
    });
    assert!(snaps.as_array().unwrap().iter().any(|s| s["id"] == snapshot.as_str()), "{snaps}");
    eprintln!("FIGURE second boot to a working API: {:.1} s", rebooted.elapsed().as_secs_f64());
    let state = appliance_state(&http, &vm, &admin).unwrap();
    assert_eq!((state["running"].as_str(), state["version"].as_str()), (Some("a"), Some("1.0.1")), "{state}");

    // The console menu on the serial port: another static address, applied
    // at once and saved on the EFI partition for the boots to come.
    // Each answer is typed once its question is on the console.
    for (question, line) in [
        ("Choose:", "3"),
        ("Interface (empty", ""),
        ("Address with prefix", "10.0.2.17/24"),
        ("Gateway (empty", "10.0.2.2"),
        ("DNS servers", "10.0.2.3"),
    ] {
        vm.wait(&format!("the console's {question:?}"), Duration::from_secs(60), |vm| {
            vm.serial().rsplit("Cairn backup appliance").next().unwrap().contains(question).then_some(())
        });
        vm.type_line(line);
    }
    vm.wait("the menu's answer", Duration::from_secs(60), |vm| {
        let s = vm.serial();
        let tail = s.rsplit("Address with prefix").next().unwrap();
        assert!(!tail.contains("not applied"), "{tail}");
        tail.contains("saved in /efi/cairn-network.toml and applied").then_some(())
    });
    let port = free_port();
    vm.monitor(&format!("hostfwd_add tcp:127.0.0.1:{port}-10.0.2.17:8007"));
    (vm.port, vm.guest) = (port, "10.0.2.17".into());
    vm.wait("the API on the menu's address", Duration::from_secs(60), |vm| {
        http.get(vm.url("/healthz")).send().ok().filter(|r| r.status() == 200)
    });

    // A backup client may not update the appliance.
    let res = http
        .post(vm.url("/api/v1/appliance/update"))
        .bearer_auth(&client_token)
        .body(std::fs::read(v2.join("cairn-update.bundle")).unwrap())
        .send()
        .unwrap();
    assert_eq!(res.status(), 403);

    // An update: written into slot B, booted, found healthy and kept.
    let posted = Instant::now();
    let done = upload_bundle(&http, &vm, &admin, &v2.join("cairn-update.bundle"));
    eprintln!("FIGURE update uploaded, written and read back: {:.1} s", posted.elapsed().as_secs_f64());
    let applied = Instant::now();
    assert_eq!((done["slot"].as_str(), done["version"].as_str()), (Some("b"), Some("1.0.2")), "{done}");
    let state = vm.wait("slot B running 1.0.2, blessed", Duration::from_secs(400), |vm| {
        let s = appliance_state(&http, vm, &admin)?;
        let blessed = s["entries"].as_array()?.iter().any(|e| e["file"] == "cairn-1.0.2-b.efi");
        (s["running"] == "b" && blessed).then_some(s)
    });
    eprintln!("FIGURE reboot into the update until blessed: {:.1} s", applied.elapsed().as_secs_f64());
    assert_eq!(state["version"], "1.0.2", "{state}");
    assert_eq!(state["update"]["state"], "settled", "{state}");
    let snaps: Value =
        http.get(vm.url("/api/v1/snapshots")).bearer_auth(&client_token).send().unwrap().json().unwrap();
    assert!(
        snaps.as_array().unwrap().iter().any(|s| s["id"] == snapshot.as_str()),
        "the data disk survived the update"
    );

    // A broken update: its service never becomes healthy, three boots fail,
    // and the machine comes back on slot B by itself.
    let done = upload_bundle(&http, &vm, &admin, &v3.join("cairn-update.bundle"));
    let applied = Instant::now();
    assert_eq!((done["slot"].as_str(), done["version"].as_str()), (Some("a"), Some("1.0.3")), "{done}");
    // Wait until the broken slot has been tried: its banner names 1.0.3.
    vm.wait("a boot of the broken slot", Duration::from_secs(300), |vm| {
        vm.serial().contains("Cairn backup appliance 1.0.3").then_some(())
    });
    let state = vm.wait("the rollback to slot B", Duration::from_secs(900), |vm| {
        let s = appliance_state(&http, vm, &admin)?;
        (s["update"]["state"] == "rolled-back").then_some(s)
    });
    eprintln!(
        "FIGURE broken update until rolled back (three failed boots): {:.1} s",
        applied.elapsed().as_secs_f64()
    );
    assert_eq!((state["running"].as_str(), state["version"].as_str()), (Some("b"), Some("1.0.2")), "{state}");
    assert_eq!(
        (state["update"]["version"].as_str(), state["update"]["tries"].as_u64()),
        (Some("1.0.3"), Some(3)),
        "{state}"
    );
    // systemd-boot counted three boots of it (tries above); the console of
    // each showed its banner when it got that far.
    eprintln!(
        "the broken slot's banner appeared {} times",
        vm.serial().matches("Cairn backup appliance 1.0.3, slot A").count()
    );
    let page = http.get(vm.url("/appliance")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page.contains("id=\"rolled-back\"") && page.contains("1.0.3"), "{page}");
    let snaps: Value =
        http.get(vm.url("/api/v1/snapshots")).bearer_auth(&client_token).send().unwrap().json().unwrap();
    assert!(
        snaps.as_array().unwrap().iter().any(|s| s["id"] == snapshot.as_str()),
        "the data disk survived the rollback"
    );
    vm.power_off();
}
