//! Cairn's services: backup, restore, verify, prune, garbage collection and
//! catalog rebuild, over a `filevol` datastore and its `catalog`.
//!
//! Invariant: no tokio here yet and no HTTP, JSON or terminal output; the
//! daemon renders what these calls return.

pub mod fsrestore;
pub mod fswalk;
