//! Fuzz the update bundle reader (`osimage::bundle`): arbitrary bytes as a
//! bundle never panic, and a bundle whose header parses is re-signed with
//! a key the reader trusts, so that the sections' decoding (zstd, lengths,
//! hashes) sees hostile bytes too, as it would from a leaked signing key.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use osimage::bundle::{self, Bundle};
use osimage::keys::SecretKey;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_seed(&[7u8; 32]);
    let mut cursor = Cursor::new(data);
    let Ok((_, text, _)) = bundle::read_header(&mut cursor) else { return };
    let rest = &data[16 + text.len() + 64..];
    let mut signed = bundle::SIGNING_CONTEXT.to_vec();
    signed.extend_from_slice(&text);
    let mut again = data[..16 + text.len()].to_vec();
    again.extend_from_slice(&key.sign(&signed));
    again.extend_from_slice(rest);
    if let Ok(mut b) = Bundle::new(Cursor::new(again), &key.public()) {
        let _ = b.verify_all();
    }
});
