//! The `cairn` binary (being written).
fn main() {}
