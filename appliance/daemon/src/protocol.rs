//! The remote protocol's messages live in their own crate (`protocol`),
//! shared by the client and the server; this module names them for the
//! rest of the binary.

pub use ::protocol::*;
