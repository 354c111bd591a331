//! Walking a source tree into archive entries (being written).
