//! Restoring archive entries into a directory (being written).
