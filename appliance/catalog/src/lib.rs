//! The redb catalog (being written).
