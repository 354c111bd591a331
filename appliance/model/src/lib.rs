//! The shared vocabulary of Cairn: the names every other crate uses for
//! namespaces, backup groups and snapshots, and the pure retention rules.
//!
//! Invariant: nothing here does I/O or reads the clock; time is always an
//! argument. Nothing here derives `Serialize`: boundary crates convert.

pub mod access;
pub mod backy;
pub mod human;
pub mod ids;
pub mod item;
pub mod job;
pub mod policy;
pub mod prune;
pub mod size;
pub mod snapshot;
pub mod tape;
pub mod time;
pub mod words;

pub use access::{ApiToken, Role, Session, User};
pub use ids::{BackupGroup, GroupOrSnapshot, IdError, Namespace, SnapshotId};
pub use item::ItemKind;
pub use job::{Job, JobSource, PolicyUse, ScheduleKind, Sla, Task, TaskState};
pub use policy::PolicyRecord;
pub use snapshot::{ArchiveKind, ArchiveSummary, SnapshotInfo, SnapshotSummary, VerifyState};
