//! Every redb table of the catalog, and the schema version they make up.
//!
//! Table names carry the version of their row format (`snapshots_v1`); a
//! change of a key or of the meaning of a field is a new table name, a new
//! `SCHEMA_VERSION` and a frozen migration module that copies the old
//! table into the new one. A new optional field is not: it raises
//! `READER_VERSION` (see there).
//!
//! Invariant: no `TableDefinition` exists outside this file.
//! Invariant: `meta` never changes its name or types; it is how a reader
//! learns which schema it is looking at.

use redb::TableDefinition;

/// The schema this build of cairn reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Small facts about the catalog itself; holds `schema_version`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Key in `META` whose value is the schema version.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Within one schema version rows only ever gain optional fields ("additive
/// only"), and each addition is a new reader version: the fields a reader
/// of that version knows. A build reads and writes rows of `READER_VERSION`
/// and refuses a catalog whose `MIN_READER_KEY` is newer, since it would
/// drop the fields it does not know when it writes a row back.
///
/// 1: the rows as first written. 2: job rows with `intervals`,
/// `scheduler`, `retention` and `source` (with `max_bytes`).
pub const READER_VERSION: u64 = 2;

/// Key in `META` whose value is the oldest reader version that keeps every
/// field of every row written so far (absent: 1). Raised, never lowered,
/// in the transaction that writes a row using newer fields.
pub(crate) const MIN_READER_KEY: &str = "min_reader_version";

/// Key in `META` counting the write transactions that changed `SNAPSHOTS`
/// (absent: 0), so a reader can tell cheaply whether anything changed.
pub(crate) const SNAPSHOTS_GENERATION_KEY: &str = "snapshots_generation";

/// One row per snapshot: key from `key::snapshot_key`, value a JSON
/// `row::SnapshotRowV1`.
pub(crate) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots_v1");

/// The server's own records, which the datastore cannot give back: a
/// catalog rebuild replaces `SNAPSHOTS` only and leaves these alone. They
/// were added without a schema bump: a catalog that lacks them has none of
/// their rows, and the first write creates them.
///
/// Users by name; value a JSON `row::UserRowV1`.
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");

/// API tokens by their public id; value a JSON `row::TokenRowV1`.
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens_v1");

/// Login sessions by the blake3 hex of their secret; value a JSON
/// `row::SessionRowV1`.
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_v1");

/// Jobs by name; value a JSON `row::JobRowV1`.
pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs_v1");

/// Tasks by id (ascending = oldest first); value a JSON `row::TaskRowV1`.
pub(crate) const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks_v1");

/// Stored policies by name; value a JSON `row::PolicyRowV1` naming its
/// component by digest.
pub(crate) const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies_v1");

/// Policy components by the blake3 hex of their bytes; value the
/// component's bytes as uploaded. A component stays while a policy names it.
pub(crate) const POLICY_COMPONENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("policy_components_v1");

/// Tape media pools by name; value a JSON `tape::PoolRowV1`. The tape
/// tables came after schema 1 was first written: a reader that does not
/// know them never opens them, so they need no new schema version.
pub(crate) const TAPE_POOLS: TableDefinition<&str, &[u8]> = TableDefinition::new("tape_pools_v1");

/// Cartridges by barcode; value a JSON `tape::MediumRowV1`.
pub(crate) const TAPE_MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("tape_media_v1");

/// Media sets by id; value a JSON `tape::MediaSetRowV1`.
pub(crate) const TAPE_SETS: TableDefinition<&str, &[u8]> = TableDefinition::new("tape_sets_v1");

/// Snapshots on tape: key `SET\0SESSION` (the session zero-padded to ten
/// digits, so a set's copies sort in the order written); value a JSON
/// `tape::TapeCopyRowV1`.
pub(crate) const TAPE_COPIES: TableDefinition<&str, &[u8]> = TableDefinition::new("tape_copies_v1");
