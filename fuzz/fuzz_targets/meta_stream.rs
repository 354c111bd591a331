//! Fuzz the file archive metadata stream reader: every entry it yields has
//! a safe path, and what it yields re-encodes to a stream that reads back
//! the same.
#![no_main]

use filevol::archive::{MetaReader, encode_entry, stream_header, validate_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = MetaReader::new(data) else { return };
    let entries: Vec<_> = reader.take(10_000).map_while(Result::ok).collect();
    let mut again = stream_header().to_vec();
    for e in &entries {
        assert!(validate_path(&e.path).is_ok());
        encode_entry(e, &mut again);
    }
    let back: Vec<_> = MetaReader::new(&again[..]).expect("header").map(|e| e.expect("valid")).collect();
    assert_eq!(back, entries);
});
