//! Test fixtures for Cairn's end-to-end tests.
//!
//! - [`build_tricky_tree`] makes a directory holding every filesystem case a
//!   backup must restore faithfully (modes, owners, nanosecond times, links,
//!   sparse files beyond 4 GiB, devices, xattrs and ACLs, odd names).
//! - [`compare_trees`] compares two trees by raw name bytes and reports every
//!   difference as a readable line.
//! - [`http::ExportServer`] serves an export and keeps uploads, for source
//!   handlers' tests.
//! - [`bacula::Bacula`] runs Bacula's `bls` and `bextract` on volumes, to
//!   check them against Bacula's own reading.
//! - [`garage::Garage`] runs a Garage cluster (one node or several) on
//!   loopback, for the S3 datastore's tests; [`faults::FaultProxy`] stands
//!   in front of it and throttles, cuts and slows connections.
//! - [`needs`] says whether a test that needs root, Chromium,
//!   componentize-py, Bacula's tools, the image's tools or Garage runs
//!   (`CAIRN_TEST_ROOT`, `CAIRN_TEST_BROWSER`, `CAIRN_TEST_PYTHON`,
//!   `CAIRN_TEST_BACULA`, `CAIRN_TEST_IMAGE`, `CAIRN_TEST_GARAGE`, or
//!   `CAIRN_TEST_ALL` for all).
//! - [`write_random_tree`], [`write_image_file`], [`flip_byte`],
//!   [`chunk_files`] and [`content_digest`] are small helpers.
//!
//! Fixtures panic with a message naming the path on any I/O failure: they run
//! only inside tests, where a panic is the clearest report.
//!
//! Invariant: testkit never links a Cairn crate; it sees the appliance only
//! through the filesystem, as a user would.

pub mod bacula;
mod compare;
mod content;
pub mod faults;
pub mod garage;
pub mod http;
mod needs;
mod tricky;

#[cfg(test)]
mod compare_tests;

pub use compare::{Fidelity, compare_trees, compare_trees_with};
pub use content::{RandomTree, chunk_files, content_digest, flip_byte, write_image_file, write_random_tree};
pub use needs::{ALL_VAR, Need, needs};
pub use tricky::{TreeInfo, build_tricky_tree};
