//! The JSON shapes Cairn shows the world: the CLI's `--json` output and
//! the HTTP API print the same types, so the two cannot drift. Each type
//! is built from the model's or the engine's own type (`From`/`new`);
//! nothing here reads a datastore.
//!
//! Invariant: a field added here appears in both the CLI and the API.

pub mod policy;
pub mod snapshot;

pub use policy::{ParamJson, PolicyJson};
pub use snapshot::{ListedJson, SnapshotJson, kind_name};
