//! `cairn snapshots`, `cairn protect`, `cairn unprotect`.

use std::process::ExitCode;

use anyhow::Result;
use dto::SnapshotJson;
use model::{BackupGroup, SnapshotId};

use super::common::{Global, NsArg, open};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Only this group (TYPE/ID).
    #[arg(value_name = "GROUP")]
    group: Option<String>,
    #[command(flatten)]
    ns: NsArg,
    /// Print a JSON array, oldest first.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProtectArgs {
    /// The snapshot, TYPE/ID/TIME.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    #[command(flatten)]
    ns: NsArg,
}

#[derive(Debug, clap::Args)]
pub struct NotesArgs {
    /// The snapshot, TYPE/ID/TIME.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    #[command(flatten)]
    ns: NsArg,
    /// Replace the notes with TEXT (at most 64 KiB; "" clears them).
    #[arg(long, value_name = "TEXT")]
    set: Option<String>,
}

pub fn list(cli: &Global, a: &SnapshotsArgs) -> Result<ExitCode> {
    let ns = a.ns.get()?;
    let group = a.group.as_deref().map(|g| BackupGroup::parse(g, &ns)).transpose()?;
    let engine = open(cli)?;
    let mut infos = engine.snapshots(group.as_ref())?;
    if group.is_none() && !ns.is_root() {
        infos.retain(|i| i.id.group.ns == ns);
    }
    if a.json {
        output::json(&infos.iter().map(SnapshotJson::from).collect::<Vec<_>>());
        return Ok(ExitCode::SUCCESS);
    }
    if infos.is_empty() {
        println!("no snapshots yet; make one with `cairn backup SOURCE --group TYPE/ID`");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            let mut flags = String::new();
            if i.protected {
                flags.push_str("protected ");
            }
            match i.verify {
                model::VerifyState::Ok => flags.push_str("verified"),
                model::VerifyState::Failed => flags.push_str("DAMAGED"),
                model::VerifyState::None => {}
            }
            vec![
                i.id.time_text(),
                i.id.to_string(),
                output::size(i.size),
                output::size(i.stored),
                output::duration_ms(i.duration_ms),
                flags.trim().to_owned(),
                i.tags.join(","),
            ]
        })
        .collect();
    output::table(&["TIME", "SNAPSHOT", "SIZE", "NEW", "DURATION", "STATE", "TAGS"], &rows);
    let size: u64 = infos.iter().map(|i| i.size).sum();
    let stored: u64 = infos.iter().map(|i| i.stored).sum();
    let factor = if stored > 0 { size as f64 / stored as f64 } else { 0.0 };
    println!();
    println!(
        "{} snapshot{}, {} logical, {} stored, dedup factor {factor:.1}",
        infos.len(),
        if infos.len() == 1 { "" } else { "s" },
        output::size(size),
        output::size(stored)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn protect(cli: &Global, a: &ProtectArgs, protected: bool) -> Result<ExitCode> {
    let id = SnapshotId::parse(&a.snapshot, &a.ns.get()?)?;
    let engine = open(cli)?;
    engine.set_protected(&id, protected)?;
    println!("{id} {}", if protected { "protected" } else { "no longer protected" });
    Ok(ExitCode::SUCCESS)
}

/// Print a snapshot's notes, or replace them.
pub fn notes(cli: &Global, a: &NotesArgs) -> Result<ExitCode> {
    let id = SnapshotId::parse(&a.snapshot, &a.ns.get()?)?;
    let engine = open(cli)?;
    if let Some(text) = &a.set {
        engine.set_notes(&id, text)?;
    }
    let notes = engine.snapshot(&id)?.notes;
    if !notes.is_empty() {
        println!("{}", crate::output::text(&notes));
    }
    Ok(ExitCode::SUCCESS)
}
