//! The Cairn datastore: a directory holding the chunk store, snapshot
//! directories (manifest, indexes, state) and the writer journals that let
//! garbage collection run beside backups.
//!
//! Invariant: filevol knows nothing of tokio, HTTP or the catalog; the
//! datastore alone is enough to rebuild the catalog.

pub mod archive;
