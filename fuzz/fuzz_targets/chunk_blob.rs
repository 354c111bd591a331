//! Fuzz the chunk blob reader: any bytes either decode to data whose blake3
//! matches the header, or fail with an error; never a panic or a huge
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((id, plain)) = chunker::decode_blob(data) {
        assert_eq!(chunker::ChunkId::of(&plain), id);
        let (id2, blob) = chunker::encode_blob(&plain, 1);
        assert_eq!(id2, id);
        assert_eq!(chunker::decode_blob(&blob).expect("round trip").1, plain);
    }
});
