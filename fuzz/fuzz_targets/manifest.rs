//! Fuzz the snapshot manifest and state parsers (JSON): no panics, and what
//! parses serializes back to something that parses equal.
#![no_main]

use filevol::{Manifest, SnapshotState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = m.check();
        let again: Manifest = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }
    if let Ok(s) = serde_json::from_slice::<SnapshotState>(data) {
        let again: SnapshotState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }
});
