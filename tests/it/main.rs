//! End-to-end tests of the `cairn` binary: every test makes its own
//! datastore and source trees in temporary directories and drives the real
//! CLI, checking exit codes, JSON output and restored trees byte for byte.
//!
//! Run with `cargo test -p cairn --test it`. The tests that need root
//! (devices, owners, mounts; they also use `setfacl` from Debian's `acl`,
//! `getfattr` from `attr` and `setpriv` from util-linux), Chromium or
//! componentize-py run only when `CAIRN_TEST_ROOT=1`, `CAIRN_TEST_BROWSER=1`,
//! `CAIRN_TEST_PYTHON=1` or `CAIRN_TEST_ALL=1` asks for them
//! (`testkit::needs`); otherwise they say they are skipped and pass.

mod support;

mod appliance;
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
mod s3;
mod serve;
mod source;
mod tape;
mod verify;
mod volume;
