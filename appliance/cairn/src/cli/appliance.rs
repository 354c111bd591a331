//! `cairn appliance`: the appliance image's own commands. Operators run
//! `update` and `status`; the image's systemd units run `prepare-data`,
//! `network`, `health` and `console`; `image/build.sh` runs `keygen` and
//! `bundle`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use osimage::datadisk::{self, Choice};
use osimage::network::Settings as NetSettings;
use osimage::slots::{self, Layout};

const AFTER: &str = "\
EXAMPLES:
    cairn appliance status
    cairn appliance update cairn-update.bundle
    cairn appliance keygen signing.key                  (on the build machine)

FILES:
    /efi/EFI/Linux/cairn-VERSION-SLOT[+TRIES].efi   boot entries, one per root slot
    /efi/cairn-network.toml                         network settings (DHCP when absent)
    /usr/share/cairn/update.pub                     the key update bundles must be signed with
    /var/lib/cairn                                  the data disk (datastore, TLS, /etc/cairn)";

#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER)]
pub struct ApplianceArgs {
    #[command(subcommand)]
    command: ApplianceCommand,
    /// The EFI system partition (default /efi).
    #[arg(long, global = true, hide = true)]
    esp: Option<PathBuf>,
    /// Root slot A's device (default /dev/disk/by-partlabel/cairn-root-a).
    #[arg(long, global = true, hide = true)]
    slot_a: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    slot_b: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    cmdline: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    os_release: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    update_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ApplianceCommand {
    /// Which slot runs which version, the boot entries, and whether the last
    /// update was rolled back.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Write a signed update bundle into the slot that is not running, then
    /// reboot into it (three tries to become healthy, else back to this slot).
    Update {
        bundle: PathBuf,
        /// Write the slot but do not reboot.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Check a bundle's signature and every byte, writing nothing.
    Verify { bundle: PathBuf },
    /// Make an Ed25519 key pair for signing update bundles: the secret key
    /// into FILE (PEM, mode 0600), the public key line on stdout.
    Keygen {
        /// Where to write the secret key (refuses to overwrite).
        #[arg(required_unless_present = "public_of")]
        file: Option<PathBuf>,
        /// Print the public key line of an existing secret key instead.
        #[arg(long, value_name = "FILE", conflicts_with = "file")]
        public_of: Option<PathBuf>,
    },
    /// Make a signed update bundle from a root file system image and the two
    /// slots' unified kernel images (image/build.sh does this).
    Bundle {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        version: String,
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(long)]
        uki_a: PathBuf,
        #[arg(long)]
        uki_b: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// First boot and every boot: find the data disk (format the one empty
    /// disk on first boot), mount it on /var/lib/cairn, and put /etc/cairn on it.
    PrepareData {
        #[arg(long, default_value = "/var/lib/cairn")]
        mount: PathBuf,
        #[arg(long, default_value = "/etc/cairn")]
        config_dir: PathBuf,
        /// The configuration a new data disk starts with.
        #[arg(long, default_value = "/usr/share/cairn/cairn.toml")]
        seed: PathBuf,
    },
    /// Turn /efi/cairn-network.toml into a systemd-networkd unit under /run.
    Network {
        #[arg(long, default_value = "/run/systemd/network/10-cairn.network")]
        unit: PathBuf,
    },
    /// Wait until `cairn serve` answers its health check; fail when it does not
    /// within the timeout or its unit keeps failing (the boot then does not
    /// count as good).
    Health {
        #[arg(long, default_value = "/etc/cairn/cairn.toml")]
        config: PathBuf,
        /// Seconds to wait.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Give up once the service has restarted this often.
        #[arg(long, default_value_t = 3)]
        restarts: u32,
    },
    /// The console: addresses, certificate fingerprint and first password,
    /// then a menu on stdin (network, reboot, power off) unless --no-menu.
    Console {
        #[arg(long, default_value = "/etc/cairn/cairn.toml")]
        config: PathBuf,
        /// Print the banner and exit.
        #[arg(long)]
        no_menu: bool,
    },
}

fn layout(a: &ApplianceArgs) -> Layout {
    let mut l = Layout::appliance();
    let set = |dst: &mut PathBuf, src: &Option<PathBuf>| {
        if let Some(p) = src {
            *dst = p.clone();
        }
    };
    set(&mut l.esp, &a.esp);
    set(&mut l.slot_a, &a.slot_a);
    set(&mut l.slot_b, &a.slot_b);
    set(&mut l.cmdline, &a.cmdline);
    set(&mut l.os_release, &a.os_release);
    set(&mut l.update_key, &a.update_key);
    l
}

pub fn run(a: &ApplianceArgs) -> Result<ExitCode> {
    let l = layout(a);
    match &a.command {
        ApplianceCommand::Status { json } => {
            let s = l.status()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("{}", s.summary());
                for e in &s.entries {
                    let state = match e.tries_left {
                        None => "good".to_owned(),
                        Some(0) => "failed (no tries left)".to_owned(),
                        Some(n) => format!("{n} tries left"),
                    };
                    println!("  {:<40} slot {}  {}", e.file, e.slot, state);
                }
            }
        }
        ApplianceCommand::Update { bundle, no_reboot } => {
            let mut b = slots::open_trusted(&l, bundle)?;
            eprintln!("bundle {}: Cairn {}, signature good", bundle.display(), b.manifest.version);
            let applied = l.apply(&mut b, &mut |step| eprintln!("  {step}"))?;
            println!("Cairn {} is in slot {} (boot entry {})", applied.version, applied.slot, applied.entry);
            if *no_reboot {
                println!(
                    "reboot to try it: {} boots to become healthy, else back to this slot",
                    slots::TRIES
                );
            } else {
                println!("rebooting into it");
                slots::reboot()?;
            }
        }
        ApplianceCommand::Verify { bundle } => {
            let mut b = slots::open_trusted(&l, bundle)?;
            b.verify_all()?;
            println!("{}: Cairn {}, signature and every section good", bundle.display(), b.manifest.version);
        }
        ApplianceCommand::Keygen { file, public_of } => keygen(file.as_deref(), public_of.as_deref())?,
        ApplianceCommand::Bundle { key, version, rootfs, uki_a, uki_b, out } => {
            let key = osimage::keys::SecretKey::read(key)?;
            let created = created_now();
            use osimage::bundle::Input;
            let m = osimage::bundle::create(
                &key,
                version,
                &created,
                &[
                    Input { name: "rootfs", path: rootfs, compress: true },
                    Input { name: "uki-a", path: uki_a, compress: false },
                    Input { name: "uki-b", path: uki_b, compress: false },
                ],
                out,
            )?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        ApplianceCommand::PrepareData { mount, config_dir, seed } => prepare_data(mount, config_dir, seed)?,
        ApplianceCommand::Network { unit } => network(&l.esp, unit)?,
        ApplianceCommand::Health { config, timeout, restarts } => {
            return health(config, Duration::from_secs(*timeout), *restarts);
        }
        ApplianceCommand::Console { config, no_menu } => console(&l, config, *no_menu)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// When the bundle was made: `SOURCE_DATE_EPOCH` when set (reproducible
/// builds), else now.
fn created_now() -> String {
    let secs =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    model::time::format_rfc3339(secs)
}

fn keygen(file: Option<&Path>, public_of: Option<&Path>) -> Result<()> {
    if let Some(p) = public_of {
        println!("{}", osimage::keys::SecretKey::read(p)?.public());
        return Ok(());
    }
    let file = file.expect("clap requires FILE");
    let (pem, key) = osimage::keys::SecretKey::generate()?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file).with_context(
            || format!("cannot create {} (an existing key is never overwritten)", file.display()),
        )?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    println!("{}", key.public());
    Ok(())
}

/// Run a command; its output on failure.
fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&*target)))
        .unwrap_or(false)
}

/// What blkid finds on `/dev/NAME`: (signature, label).
fn probe(name: &str) -> (Option<String>, Option<String>) {
    let out = Command::new("blkid").args(["-p", "-o", "export"]).arg(format!("/dev/{name}")).output();
    let Ok(out) = out else { return (Some("unknown (blkid failed)".into()), None) };
    match out.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
            (get("TYPE=").or_else(|| get("PTTYPE=")).or(Some("a signature".into())), get("LABEL="))
        }
        // 2: nothing found.
        Some(2) => (None, None),
        _ => (Some(format!("unknown (blkid: {})", String::from_utf8_lossy(&out.stderr).trim())), None),
    }
}

const PROBLEM: &str = "/run/cairn/data-disk";

fn prepare_data(mount: &Path, config_dir: &Path, seed: &Path) -> Result<()> {
    let _ = std::fs::remove_file(PROBLEM);
    if !is_mounted(mount) {
        // Disks appear while udev works through them; wait a little for one.
        let deadline = Instant::now() + Duration::from_secs(20);
        let choice = loop {
            let disks = datadisk::scan(Path::new("/sys/block"), &mut probe)?;
            let c = datadisk::choose(&disks);
            if !matches!(c, Choice::None { .. }) || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let dev = match choice {
            Choice::Existing(name) => format!("/dev/{name}"),
            Choice::Format(name) => {
                let dev = format!("/dev/{name}");
                eprintln!("formatting {dev} as the data disk ({})", datadisk::LABEL);
                sh(Command::new("mkfs.ext4").args(["-q", "-F", "-L", datadisk::LABEL, "-m", "1"]).arg(&dev))?;
                dev
            }
            Choice::None { why } => {
                return problem(&format!(
                    "no data disk: attach an empty disk (at least {} GiB) and reboot ({why})",
                    datadisk::MIN_BYTES >> 30
                ));
            }
            Choice::Ambiguous(names) => {
                return problem(&format!(
                    "more than one empty disk ({}); none was formatted. Format the one to use with \
                     the label {} and reboot",
                    names.join(", "),
                    datadisk::LABEL
                ));
            }
        };
        std::fs::create_dir_all(mount)?;
        sh(Command::new("mount").args(["-o", "noatime"]).arg(&dev).arg(mount))?;
        eprintln!("mounted {dev} on {}", mount.display());
    }
    let etc = mount.join("etc");
    std::fs::create_dir_all(&etc)?;
    let config = etc.join("cairn.toml");
    if !config.exists() {
        std::fs::copy(seed, &config).with_context(|| format!("seeding {}", config.display()))?;
    }
    if !is_mounted(config_dir) {
        std::fs::create_dir_all(config_dir)?;
        sh(Command::new("mount").arg("--bind").arg(&etc).arg(config_dir))?;
    }
    Ok(())
}

fn problem(text: &str) -> Result<()> {
    let _ = std::fs::create_dir_all(Path::new(PROBLEM).parent().unwrap());
    let _ = std::fs::write(PROBLEM, format!("{text}\n"));
    bail!("{text}")
}

fn network(esp: &Path, unit: &Path) -> Result<()> {
    let file = esp.join("cairn-network.toml");
    let settings = match std::fs::read_to_string(&file) {
        Ok(text) => NetSettings::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NetSettings::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    if let Some(dir) = unit.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(unit, settings.networkd_unit())?;
    eprintln!("network: {} ({})", settings.mode, file.display());
    Ok(())
}

fn server_settings(config: &Path) -> Result<server::config::Settings> {
    let file = server::config::ConfigFile::load(config)?;
    file.settings(Path::new("/var/lib/cairn/datastore"), None, false)
}

/// The fingerprint clients pin, of the certificate `cairn serve` made or was given.
fn fingerprint_of(s: &server::config::Settings) -> Option<String> {
    let (identity, _) = server::tls::load_or_create(&s.cert, &s.key, false).ok()?;
    Some(server::tls::fingerprint(&identity.cert_der))
}

fn health(config: &Path, timeout: Duration, restarts: u32) -> Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let settings = server_settings(config)?;
    let port = settings.listen.port();
    loop {
        let answer = match fingerprint_of(&settings) {
            Some(fp) => client::Remote::connect(&format!("https://127.0.0.1:{port}"), "", Some(&fp))
                .and_then(|r| r.healthz()),
            None => Err(anyhow!("no certificate yet at {}", settings.cert.display())),
        };
        match answer {
            Ok(()) => {
                println!("cairn serve is healthy");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                let (state, n) = unit_state("cairn.service");
                if n >= restarts || state == "failed" {
                    eprintln!("cairn serve is not healthy: its unit is {state} after {n} restarts ({e:#})");
                    return Ok(ExitCode::FAILURE);
                }
                if Instant::now() > deadline {
                    eprintln!("cairn serve is not healthy after {} s: {e:#}", timeout.as_secs());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A unit's ActiveState and NRestarts, as systemctl says.
fn unit_state(unit: &str) -> (String, u32) {
    let out = Command::new("systemctl").args(["show", "-p", "ActiveState", "-p", "NRestarts", unit]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_default().to_owned();
    (get("ActiveState="), get("NRestarts=").parse().unwrap_or(0))
}

/// The addresses people can reach the appliance on (no loopback, no
/// IPv6 link-local).
fn addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                std::net::IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                std::net::IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            let link_local = matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if !ip.is_loopback() && !link_local && !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

fn banner(l: &Layout, config: &Path) -> String {
    let mut b = String::new();
    let version = l.running_version().unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_owned());
    let slot = l.running_slot().map(|s| format!(", slot {s}")).unwrap_or_default();
    b.push_str(&format!("\n  Cairn backup appliance {version}{slot}\n\n"));
    if let Ok(p) = std::fs::read_to_string(PROBLEM) {
        b.push_str(&format!("  PROBLEM: {}\n", p.trim()));
        return b;
    }
    let settings = server_settings(config).ok();
    let port = settings.as_ref().map_or(8007, |s| s.listen.port());
    let addrs = addresses();
    if addrs.is_empty() {
        b.push_str("  No network address yet (DHCP); see the menu for a static address.\n");
    }
    b.push_str("  Open the dashboard at\n");
    for ip in &addrs {
        let host = match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        b.push_str(&format!("    https://{host}:{port}/\n"));
    }
    if let Some(fp) = settings.as_ref().and_then(fingerprint_of) {
        b.push_str("  and check that the browser shows this certificate:\n");
        b.push_str(&format!("  fingerprint {fp}\n"));
    }
    let pw = settings.and_then(|s| std::fs::read_to_string(s.initial_password_file?).ok());
    if let Some(pw) = pw {
        b.push_str("  Log in as admin with this password (shown until the first login):\n");
        b.push_str("  user admin\n");
        b.push_str(&format!("  password {}\n", pw.trim()));
    }
    b
}

fn console(l: &Layout, config: &Path, no_menu: bool) -> Result<()> {
    // Wait for what the banner shows: the certificate and the first
    // password (made by the first start of cairn serve), and an address.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = Path::new(PROBLEM).exists()
            || (server_settings(config).ok().is_some_and(|s| s.cert.exists()) && !addresses().is_empty());
        if ready || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // (The first start writes the password before it makes the certificate.)
    let text = banner(l, config);
    print!("{text}");
    std::io::stdout().flush()?;
    if no_menu {
        return Ok(());
    }
    menu(l, config)
}

fn ask(prompt: &str) -> Result<String> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("the console closed");
    }
    Ok(line.trim().to_owned())
}

fn menu(l: &Layout, config: &Path) -> Result<()> {
    loop {
        println!("\n  1) Show the addresses, fingerprint and password again");
        println!("  2) Network: DHCP");
        println!("  3) Network: a static address");
        println!("  4) Reboot");
        println!("  5) Power off");
        match ask("  Choose: ")?.as_str() {
            "1" => print!("{}", banner(l, config)),
            "2" => apply_network(l, &NetSettings::default()),
            "3" => {
                let s = NetSettings {
                    mode: "static".into(),
                    interface: Some(ask("  Interface (empty: every Ethernet port): ")?)
                        .filter(|s| !s.is_empty()),
                    address: Some(ask("  Address with prefix, e.g. 192.0.2.10/24: ")?),
                    gateway: Some(ask("  Gateway (empty: none): ")?).filter(|s| !s.is_empty()),
                    dns: ask("  DNS servers, separated by spaces (empty: none): ")?
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                };
                match s.check() {
                    Ok(()) => apply_network(l, &s),
                    Err(e) => println!("  {e}"),
                }
            }
            "4" => {
                let _ = Command::new("systemctl").arg("reboot").status();
            }
            "5" => {
                let _ = Command::new("systemctl").arg("poweroff").status();
            }
            _ => {}
        }
    }
}

/// Save the settings on the EFI partition (they outlive updates) and apply them.
fn apply_network(l: &Layout, s: &NetSettings) {
    let file = l.esp.join("cairn-network.toml");
    let result = std::fs::write(&file, s.to_toml())
        .map_err(anyhow::Error::from)
        .and_then(|()| network(&l.esp, Path::new("/run/systemd/network/10-cairn.network")))
        .and_then(|()| sh(Command::new("networkctl").arg("reload")).map(drop))
        .and_then(|()| sh(Command::new("networkctl").arg("reconfigure").args(interfaces())).map(drop));
    match result {
        Ok(()) => println!("  saved in {} and applied", file.display()),
        Err(e) => println!("  not applied: {e:#}"),
    }
}

fn interfaces() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n != "lo").collect())
        .unwrap_or_default()
}
