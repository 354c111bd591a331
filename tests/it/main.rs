//! End-to-end tests of the `cairn` binary: every test makes its own
//! datastore and source trees in temporary directories and drives the real
//! CLI, checking exit codes, JSON output and restored trees byte for byte.
//!
//! Run with `cargo test -p cairn --test it`. Needs root (devices, owners)
//! and the `setfacl` (Debian `acl`) and `setpriv` (util-linux) commands.

mod support;

mod browser;
mod catalog;
mod change_detection;
mod cli_basics;
mod corpus_roundtrip;
mod crash;
mod dedup;
mod devices;
mod disk_full;
mod excludes;
mod gc;
mod golden;
mod job_policies;
mod job_runs;
mod policy;
mod policy_api;
mod prune;
mod python_policy;
mod remote;
mod serve;
mod source;
mod verify;
