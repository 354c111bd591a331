//! Fuzz the volume readers (blocks, records, labels, attribute records):
//! bytes from a tape nobody trusts never panic the reader, it always ends,
//! and what decodes encodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volfmt::{Attributes, Event, SessionLabel, VolumeLabel, VolumeReader};

fuzz_target!(|data: &[u8]| {
    // A volume: events until the end; errors are fine, running for ever is not.
    let mut r = VolumeReader::new(data);
    for _ in 0..100_000 {
        match r.next_event() {
            Ok(None) => break,
            Ok(Some(Event::Record { record, .. })) => {
                let _ = Attributes::decode(&record.data);
            }
            Ok(Some(_)) | Err(_) => {}
        }
    }
    if let Ok(a) = Attributes::decode(data) {
        if let Ok(bytes) = a.encode() {
            assert_eq!(Attributes::decode(&bytes).unwrap(), a);
        }
    }
    if let Ok(v) = VolumeLabel::decode(data) {
        if let Ok(bytes) = v.encode() {
            assert_eq!(VolumeLabel::decode(&bytes).unwrap(), v);
        }
    }
    for end in [false, true] {
        if let Ok(l) = SessionLabel::decode(data, end) {
            if let Ok(bytes) = l.encode() {
                assert_eq!(SessionLabel::decode(&bytes, end).unwrap(), l);
            }
        }
    }
});
