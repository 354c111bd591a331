//! The glue between stored policies and the work they steer, used alike by
//! the CLI and the server: adding and loading policy components through
//! the compiled-artifact cache, retention deciders and the prune
//! simulator (`policies`), backups and restores through a source handler
//! (`sources`), and [`JobHost`], which runs a job's policies for the
//! engine's job runner.
//!
//! Invariant: this crate neither parses arguments nor speaks HTTP; it
//! returns what the CLI and the server render.

pub mod job_host;
pub mod policies;
pub mod sources;

pub use job_host::JobHost;
