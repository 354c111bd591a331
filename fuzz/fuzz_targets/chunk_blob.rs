//! Fuzz the chunk blob readers: any bytes either decode to data whose
//! blake3 matches the header, or fail with an error; never a panic or a
//! huge allocation. The checking reader (`verify_blob`) accepts exactly
//! what the decoding one accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = chunker::decode_blob(data);
    let verified = chunker::verify_blob(data);
    assert_eq!(decoded.is_ok(), verified.is_ok(), "{decoded:?} / {verified:?}");
    if let Ok((id, plain)) = decoded {
        assert_eq!(chunker::ChunkId::of(&plain), id);
        let (id2, blob) = chunker::encode_blob(&plain, 1);
        assert_eq!(id2, id);
        assert_eq!(chunker::decode_blob(&blob).expect("round trip").1, plain);
    }
});
