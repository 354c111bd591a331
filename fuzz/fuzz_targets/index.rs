//! Fuzz the dynamic and fixed index readers: what decodes re-encodes to the
//! same bytes.
#![no_main]

use filevol::{DynamicIndex, FixedIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = DynamicIndex::decode(data) {
        assert_eq!(d.encode(), data);
    }
    if let Ok(f) = FixedIndex::decode(data) {
        assert_eq!(f.encode(), data);
    }
});
