//! `cairn datastore`: where the datastore keeps its data, and for one in
//! an S3 bucket, the claim (takeover) and catching up with the bucket.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::common::{Global, open};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum DatastoreCommand {
    /// Where the data lives: a directory, or a bucket (with its owner and
    /// the local cache).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Claim an S3 datastore's bucket for this machine (disaster recovery:
    /// the appliance that wrote it is gone). The other machine can then no
    /// longer write; this one catches up with what it wrote.
    #[command(after_long_help = "\
Only one appliance writes a bucket: the one named in its owner object (cairn-owner.json). One \
that attached with `cairn init --s3 … --existing` while another held the claim reads only: list, \
restore and verify work; backup, prune, gc and verify's quarantine are refused. Take the claim over \
only when the old owner is gone for good, or stopped: if it still runs, its backups start failing.")]
    Takeover,
    /// Fetch snapshots written to the bucket since this machine last
    /// looked, and drop those deleted there (a reading machine's refresh).
    Refresh,
}

pub fn run(cli: &Global, c: &DatastoreCommand) -> Result<ExitCode> {
    let engine = open(cli)?;
    let ds = engine.datastore();
    match c {
        DatastoreCommand::Status { json } => {
            let st = dto::DatastoreJson::of(&engine)?;
            if *json {
                output::json(&st);
                return Ok(ExitCode::SUCCESS);
            }
            println!("datastore  {} ({})", st.directory, st.kind);
            if let (Some(b), Some(place)) = (&st.bucket, st.place()) {
                println!("bucket     {place}");
                match &b.owner {
                    Some(o) if b.writable => {
                        println!("owner      this machine ({}, since {})", o.host, o.claimed)
                    }
                    Some(o) => println!("owner      {} since {}: this machine reads only", o.host, o.claimed),
                    None => println!("owner      nobody: this machine reads only"),
                }
                println!(
                    "cache      {} of {}",
                    model::human::size(b.cache_bytes),
                    model::human::size(b.cache_limit)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DatastoreCommand::Takeover | DatastoreCommand::Refresh => {
            if ds.remote().is_none() {
                bail!(
                    "{} is a local datastore; only one in an S3 bucket has a claim to take over or a bucket to refresh from",
                    ds.root().display()
                );
            }
            let st = if matches!(c, DatastoreCommand::Takeover) {
                ds.take_over()?
            } else {
                ds.sync_from_bucket(true)?
            };
            engine.reconcile()?;
            if matches!(c, DatastoreCommand::Takeover) {
                println!(
                    "claimed {}: this machine now writes it",
                    ds.remote().expect("s3").settings().describe()
                );
            }
            println!("{} snapshots fetched, {} dropped (gone from the bucket)", st.pulled, st.dropped);
            Ok(ExitCode::SUCCESS)
        }
    }
}
