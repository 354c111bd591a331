//! The JSON shapes Cairn shows the world: the CLI's `--json` output and
//! the HTTP API print the same types, so the two cannot drift; and what a
//! client sends to make a job (`NewJob`, also what the dashboard's job form
//! becomes). Each type is built from the model's or the engine's own type
//! (`From`/`new`); nothing here reads a datastore.
//!
//! Invariant: a field added here appears in both the CLI and the API.

pub mod access;
pub mod datastore;
pub mod job;
pub mod job_form;
pub mod policy;
pub mod snapshot;
pub mod tape;

pub use access::{TokenJson, UserJson};
pub use datastore::{BucketJson, DatastoreJson, SyncJson};
pub use job::{HIDDEN, JobJson, JobSourceJson, KeepJson, NewJob, PolicyUseJson, Started, TaskJson};
pub use job_form::{JobForm, form_number};
pub use policy::{ParamJson, PolicyJson};
pub use snapshot::{ListedJson, SnapshotJson, kind_name};
pub use tape::{MediaCatalogJson, MediaSetJson, MediumJson, PoolJson, TapeCopyJson, TapeLibraryJson};
