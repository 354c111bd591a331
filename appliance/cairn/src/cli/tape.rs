//! `cairn tape`: tape libraries (real or virtual), media pools, and
//! snapshots written to and read back from cartridges.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use engine::Progress;
use engine::tape::TapeBackupOptions;
use engine::volume_extract::ExtractOptions;
use model::tape::{Allocation, MediaPool};
use model::{BackupGroup, SnapshotId};
use tape::virt::{CartridgeSpec, CreateOptions, VirtualLibrary};

use super::common::{Global, NsArg, open};
use crate::output;
use crate::progress::Bar;

const TAPE_AFTER: &str = "\
EXAMPLES:
    cairn tape library create /var/lib/cairn/library --drives 2 --slots 16 --capacity 256M
    export CAIRN_TAPE_LIBRARY=/var/lib/cairn/library
    cairn tape pool add weekly --allocation continue --retention 8w
    cairn tape backup --group host/web01 --pool weekly
    cairn tape inventory
    cairn tape restore host/web01/2026-11-22T03:00:00Z /tmp/from-tape
    cairn tape scan

A real library is a library.toml: kind = \"scsi\", changer = \"/dev/sg3\",
drives = [\"/dev/nst0\", \"/dev/nst1\"] (drives in the changer's order).";

#[derive(Debug, clap::Args)]
#[command(after_long_help = TAPE_AFTER)]
pub struct TapeArgs {
    /// The library: a virtual library's directory, or a `library.toml`
    /// describing a real one (changer and drives).
    #[arg(long, global = true, env = "CAIRN_TAPE_LIBRARY", value_name = "PATH")]
    library: Option<PathBuf>,
    #[command(subcommand)]
    command: TapeCommand,
}

#[derive(Debug, Subcommand)]
pub enum TapeCommand {
    /// Make or change a virtual library.
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Media pools: where tape jobs write, and how long their media sets stay.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// What is in each drive and slot, with the media catalog's word on each
    /// cartridge (touches no drive).
    Inventory(JsonArg),
    /// The media catalog: cartridges, media sets, and which snapshot is on which
    /// cartridges.
    Media(JsonArg),
    /// Label a blank cartridge into a new media set of a pool (written once: the
    /// pool's next job goes on on it).
    Label(LabelArgs),
    /// Load a cartridge into a drive.
    Load(LoadArgs),
    /// Eject the cartridge in a drive and put it back in its slot.
    Unload(DriveArg),
    /// Move a cartridge to an import/export slot, to take it out of the library.
    Eject(BarcodeArg),
    /// Clean a drive now with one of the library's cleaning cartridges (CLN…)
    /// and put it back. Jobs clean a drive that asks for it by themselves.
    Clean(DriveArg),
    /// Write snapshots to a pool: one session each, cartridge after cartridge as
    /// they fill. A drive is reserved only when there is something to write.
    Backup(BackupArgs),
    /// Restore a snapshot from tape into TARGET (or, without TARGET, back into
    /// the datastore as the same snapshot), loading only the cartridges it is on.
    Restore(RestoreArgs),
    /// Rebuild the media catalog from the cartridges: pools, media sets,
    /// cartridges, and which snapshot is where.
    Scan(ScanArgs),
}

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// Create a virtual library: a directory of file-backed cartridges, drives
    /// and slots, used as a real library is.
    Create(CreateArgs),
    /// Put a new cartridge in a virtual library's import/export slot.
    Insert(InsertArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The library's directory (new or empty).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[arg(long, default_value_t = 2, value_name = "N")]
    drives: u16,
    #[arg(long, default_value_t = 16, value_name = "N")]
    slots: u16,
    /// Import/export (mail) slots.
    #[arg(long, default_value_t = 2, value_name = "N")]
    import_export: u16,
    /// Bytes each cartridge holds.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = model::size::parse_size)]
    capacity: u64,
    /// Data cartridges (default: one per slot, less the cleaning ones).
    #[arg(long, value_name = "N")]
    cartridges: Option<u16>,
    /// How many of the data cartridges (the last ones) are WORM.
    #[arg(long, default_value_t = 0, value_name = "N")]
    worm: u16,
    /// Cleaning cartridges (CLN001L1, …).
    #[arg(long, default_value_t = 0, value_name = "N")]
    cleaning: u16,
    /// Barcode prefix of data cartridges: three capital letters.
    #[arg(long, default_value = "CRN", value_name = "ABC")]
    prefix: String,
}

#[derive(Debug, clap::Args)]
pub struct InsertArgs {
    /// The virtual library's directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The new cartridge's barcode (letters and digits).
    #[arg(value_name = "BARCODE")]
    barcode: String,
    /// Bytes it holds.
    #[arg(long, default_value = "256M", value_name = "SIZE", value_parser = model::size::parse_size)]
    capacity: u64,
    /// A write-once cartridge.
    #[arg(long)]
    worm: bool,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Add a pool, or change one.
    Add(PoolAddArgs),
    /// List the pools.
    List(JsonArg),
    /// Remove a pool no media set belongs to.
    Remove(PoolNameArg),
}

#[derive(Debug, clap::Args)]
pub struct PoolAddArgs {
    /// The pool's name: letters, digits, '-' and '_'.
    #[arg(value_name = "NAME")]
    name: String,
    /// `continue`: jobs append to the pool's media set while it lasts;
    /// `new-set`: each job starts a new one.
    #[arg(long, default_value = "continue", value_name = "RULE")]
    allocation: String,
    /// How long a closed media set is kept before its cartridges are written
    /// again (`30d`, `12w`), or `forever`.
    #[arg(long, default_value = "forever", value_name = "TIME")]
    retention: String,
    /// Only WORM cartridges (and never another).
    #[arg(long)]
    worm: bool,
}

#[derive(Debug, clap::Args)]
pub struct PoolNameArg {
    /// The pool's name.
    #[arg(value_name = "NAME")]
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// The cartridge (it must be blank).
    #[arg(value_name = "BARCODE")]
    barcode: String,
    /// The pool whose new media set it starts.
    #[arg(long, value_name = "POOL")]
    pool: String,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The cartridge.
    #[arg(value_name = "BARCODE")]
    barcode: String,
    /// The drive (from 0).
    #[arg(long, default_value_t = 0, value_name = "N")]
    drive: usize,
}

#[derive(Debug, clap::Args)]
pub struct DriveArg {
    /// The drive (from 0).
    #[arg(long, default_value_t = 0, value_name = "N")]
    drive: usize,
}

#[derive(Debug, clap::Args)]
pub struct BarcodeArg {
    /// The cartridge.
    #[arg(value_name = "BARCODE")]
    barcode: String,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Snapshots, TYPE/ID/TIME (or, with --group, none).
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    ns: NsArg,
    /// Every snapshot of this group (TYPE/ID) the pool does not hold yet.
    #[arg(long, value_name = "GROUP")]
    group: Vec<String>,
    /// With --group: only each group's newest snapshot.
    #[arg(long)]
    latest: bool,
    /// The media pool to write to (`cairn tape pool add`).
    #[arg(long, value_name = "POOL")]
    pool: String,
    /// Block size (64K to 4M).
    #[arg(long, value_name = "SIZE", default_value = "256K", value_parser = model::size::parse_size)]
    block_size: u64,
    /// Write with up to N drives at once, each on its own cartridge of the
    /// media set (snapshots go to whichever drive is free).
    #[arg(long, default_value_t = 1, value_name = "N")]
    drives: usize,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// TYPE/ID/TIME.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Where to restore; without it, back into the datastore.
    #[arg(value_name = "TARGET")]
    target: Option<PathBuf>,
    #[command(flatten)]
    ns: NsArg,
    /// The copy in this pool (default: the copy whose session is dated
    /// latest; sessions written at once onto one cartridge all carry the
    /// date of the job that held it).
    #[arg(long, value_name = "POOL")]
    pool: Option<String>,
    /// Only this path: ARCHIVE/PATH (or PATH when the snapshot has one archive).
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Replace existing files in TARGET.
    #[arg(long)]
    overwrite: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Only these cartridges (default: every one but cleaning cartridges).
    #[arg(value_name = "BARCODE")]
    barcodes: Vec<String>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// `30d`, `12w`, `24h`, a number of seconds, or `forever`.
fn parse_retention(text: &str) -> Result<Option<i64>> {
    if text == "forever" {
        return Ok(None);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(Some(secs.max(0)));
    }
    let t = text.trim();
    if let Some(years) = t.strip_suffix('y').and_then(|n| n.parse::<i64>().ok()) {
        return Ok(Some(years * 365 * 86_400));
    }
    model::backy::parse_duration(t)
        .map(Some)
        .ok_or_else(|| anyhow!("retention {text:?}: a time such as 30d, 12w, 1y, or forever"))
}

fn library(a: &TapeArgs) -> Result<tape::Library> {
    let path = a
        .library
        .as_ref()
        .ok_or_else(|| anyhow!("name the library with --library (or CAIRN_TAPE_LIBRARY)"))?;
    tape::Library::open(path).with_context(|| format!("opening the library {}", path.display()))
}

fn backup_options(pool: &str, block_size: u64, drives: usize) -> Result<TapeBackupOptions> {
    Ok(TapeBackupOptions { block_size: usize::try_from(block_size)?, ..TapeBackupOptions::new(pool, drives) })
}

pub fn run(g: &Global, a: &TapeArgs) -> Result<ExitCode> {
    match &a.command {
        TapeCommand::Library(LibraryCommand::Create(c)) => create(c),
        TapeCommand::Library(LibraryCommand::Insert(c)) => {
            let lib = tape::Library::open(&c.dir)?;
            let v =
                lib.as_virtual().ok_or_else(|| anyhow!("{} is not a virtual library", c.dir.display()))?;
            let spec = CartridgeSpec { worm: c.worm, ..CartridgeSpec::new(c.capacity) };
            let at = v.insert(&c.barcode, &spec)?;
            println!("{} is in import/export slot {at}", c.barcode);
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Pool(c) => pool(g, c),
        TapeCommand::Inventory(j) => inventory(g, a, j.json),
        TapeCommand::Media(j) => media(g, j.json),
        TapeCommand::Label(l) => {
            let engine = open(g)?;
            let r = engine.tape_label(&library(a)?, &l.barcode, &backup_options(&l.pool, 256 << 10, 1)?)?;
            if l.json {
                output::json(&r);
            } else {
                println!(
                    "{} labelled into media set {} of pool {}",
                    l.barcode,
                    r.set.unwrap_or_default(),
                    r.pool
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Load(l) => {
            library(a)?.changer()?.load(&l.barcode, l.drive)?;
            println!("{} is in drive {}", l.barcode, l.drive);
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Unload(d) => {
            let lib = library(a)?;
            let mut drive = lib.drive(d.drive)?;
            match drive.eject() {
                Ok(()) | Err(tape::TapeError::NoMedium(_)) => {}
                Err(e) => return Err(e.into()),
            }
            drop(drive);
            match lib.changer()?.unload(d.drive)? {
                Some(b) => println!("{b} is back in its slot"),
                None => println!("drive {} was empty", d.drive),
            }
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Eject(b) => {
            let at = library(a)?.changer()?.export(&b.barcode)?;
            println!("{} is in import/export slot {at}", b.barcode);
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Clean(d) => {
            let cleaner = open(g)?.tape_clean(&library(a)?, d.drive)?;
            println!("drive {} cleaned with {cleaner}", d.drive);
            Ok(ExitCode::SUCCESS)
        }
        TapeCommand::Backup(b) => backup(g, a, b),
        TapeCommand::Restore(r) => restore(g, a, r),
        TapeCommand::Scan(s) => {
            let engine = open(g)?;
            let r = engine.tape_scan(&library(a)?, &s.barcodes)?;
            if s.json {
                output::json(&r);
            } else {
                for m in &r.media {
                    let why = m.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
                    println!(
                        "{}: {}{}{}",
                        m.barcode,
                        m.state,
                        m.set
                            .as_ref()
                            .map(|s| format!(", set {s}, {} sessions", m.sessions))
                            .unwrap_or_default(),
                        why
                    );
                }
                println!(
                    "{} media sets, {} snapshots on tape, pools: {}",
                    r.sets,
                    r.copies,
                    r.pools.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(c: &CreateArgs) -> Result<ExitCode> {
    let cartridges = c.cartridges.unwrap_or(c.slots.saturating_sub(c.cleaning));
    let lib = VirtualLibrary::create(
        &c.dir,
        &CreateOptions {
            drives: c.drives,
            slots: c.slots,
            import_export: c.import_export,
            capacity: c.capacity,
            cartridges,
            worm: c.worm,
            cleaning: c.cleaning,
            prefix: c.prefix.clone(),
        },
    )?;
    println!(
        "virtual library {}: {} drives, {} slots ({} cartridges of {}, {} WORM, {} cleaning), {} import/export slots",
        lib.dir().display(),
        c.drives,
        c.slots,
        cartridges,
        output::size(c.capacity),
        c.worm,
        c.cleaning,
        c.import_export
    );
    Ok(ExitCode::SUCCESS)
}

fn pool(g: &Global, c: &PoolCommand) -> Result<ExitCode> {
    let engine = open(g)?;
    match c {
        PoolCommand::Add(p) => {
            let allocation = Allocation::parse(&p.allocation)
                .ok_or_else(|| anyhow!("allocation {:?}: continue or new-set", p.allocation))?;
            let pool = MediaPool {
                name: p.name.clone(),
                allocation,
                retention: parse_retention(&p.retention)?,
                worm: p.worm,
            };
            engine.put_pool(&pool)?;
            println!("pool {} saved", p.name);
        }
        PoolCommand::List(j) => {
            let pools = engine.media_catalog()?.pools;
            if j.json {
                output::json(&pools.iter().map(dto::PoolJson::from).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = pools
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.allocation.as_str().into(),
                            p.retention.map_or("forever".into(), model::backy::format_duration),
                            if p.worm { "yes".into() } else { "no".into() },
                        ]
                    })
                    .collect();
                output::table(&["POOL", "ALLOCATION", "RETENTION", "WORM"], &rows);
            }
        }
        PoolCommand::Remove(p) => {
            if !engine.remove_pool(&p.name)? {
                bail!("there is no pool {}", p.name);
            }
            println!("pool {} removed", p.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inventory(g: &Global, a: &TapeArgs, json: bool) -> Result<ExitCode> {
    let engine = open(g)?;
    let rows = engine.tape_inventory(&library(a)?)?;
    if json {
        output::json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.into(),
                r.address.to_string(),
                r.barcode.clone().unwrap_or_else(|| "-".into()),
                r.state.clone().unwrap_or_default(),
                r.pool.clone().unwrap_or_default(),
                r.seq.map(|s| s.to_string()).unwrap_or_default(),
                if r.worm { "WORM".into() } else { String::new() },
                if r.bytes > 0 { output::size(r.bytes) } else { String::new() },
                if r.sessions > 0 { r.sessions.to_string() } else { String::new() },
            ]
        })
        .collect();
    output::table(
        &["ELEMENT", "ADDRESS", "BARCODE", "STATE", "POOL", "SEQ", "", "BYTES", "SNAPSHOTS"],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

fn media(g: &Global, json: bool) -> Result<ExitCode> {
    let mc = open(g)?.media_catalog()?;
    if json {
        output::json(&dto::MediaCatalogJson::from(&mc));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = mc
        .copies
        .iter()
        .map(|c| {
            vec![
                c.snapshot.to_string(),
                c.pool.clone(),
                c.session.to_string(),
                c.parts.iter().map(|p| format!("{}:{}", p.barcode, p.file)).collect::<Vec<_>>().join(" "),
                output::count(c.files, "file"),
                output::size(c.bytes),
            ]
        })
        .collect();
    output::table(&["SNAPSHOT", "POOL", "SESSION", "CARTRIDGE:FILE", "FILES", "BYTES"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn backup(g: &Global, a: &TapeArgs, b: &BackupArgs) -> Result<ExitCode> {
    let engine = open(g)?;
    let ns = b.ns.get()?;
    let mut ids = b.snapshots.iter().map(|s| SnapshotId::parse(s, &ns)).collect::<Result<Vec<_>, _>>()?;
    let groups = b.group.iter().map(|g| BackupGroup::parse(g, &ns)).collect::<Result<Vec<_>, _>>()?;
    ids.extend(engine.snapshots_of_groups(&groups, b.latest)?);
    if ids.is_empty() && b.group.is_empty() {
        bail!("name snapshots, or --group");
    }
    let lib = library(a)?;
    let progress = Arc::new(Progress::default());
    let bar = Bar::start("writing to tape", progress.clone());
    let report = engine.tape_backup(&lib, &ids, &backup_options(&b.pool, b.block_size, b.drives)?, &progress);
    bar.done();
    let report = report?;
    if b.json {
        output::json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    for (barcode, why) in &report.rejected {
        eprintln!("passed over {barcode}: {why}");
    }
    for s in &report.skipped {
        println!("{s}: already in pool {}", report.pool);
    }
    for s in &report.sessions {
        let parts = s.parts.iter().map(|(b, f)| format!("{b} file {f}")).collect::<Vec<_>>().join(", ");
        println!(
            "{}: session {} ({}, {}) on {parts}",
            s.snapshot,
            s.session,
            output::count(s.files, "file"),
            output::size(s.bytes)
        );
    }
    if report.sessions.is_empty() {
        println!("nothing to write: no drive was used");
    } else {
        println!(
            "{} to pool {} on {}; drive held {:.1} s, busy {:.1} s",
            output::size(report.bytes),
            report.pool,
            report.media.join(", "),
            report.drive_held_secs,
            report.drive_busy_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(g: &Global, a: &TapeArgs, r: &RestoreArgs) -> Result<ExitCode> {
    let engine = open(g)?;
    let id = SnapshotId::parse(&r.snapshot, &r.ns.get()?)?;
    let lib = library(a)?;
    let opts =
        ExtractOptions { session: None, overwrite: r.overwrite, per_archive: false, path: r.path.clone() };
    let progress = Arc::new(Progress::default());
    let report = engine.tape_restore(&lib, &id, r.pool.as_deref(), r.target.as_deref(), &opts, &progress)?;
    for d in &report.damage {
        eprintln!("damaged: {}", output::text(d));
    }
    for (name, why) in &report.failed {
        eprintln!("not restored: {}: {why}", output::text(name));
    }
    if r.json {
        output::json(&report);
    } else {
        match (&r.target, report.state) {
            (_, Some("present")) => println!("{}: the datastore holds it already", report.snapshot),
            (Some(t), _) => println!(
                "{}: {} restored ({}) into {} from {}",
                report.snapshot,
                output::count(report.files, "file"),
                output::size(report.bytes),
                t.display(),
                report.media.join(", ")
            ),
            (None, _) => println!(
                "{}: back in the datastore ({}) from {}",
                report.snapshot,
                output::count(report.files, "file"),
                report.media.join(", ")
            ),
        }
    }
    let whole = report.damage.is_empty() && report.failed.is_empty();
    Ok(if whole { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
