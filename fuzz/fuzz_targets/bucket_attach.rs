//! Fuzz attaching to a bucket nobody trusts (`cairn init --s3 --existing`):
//! arbitrary objects (keys and bytes) in a bucket, then the attach, which
//! reads the datastore marker and the owner object, lists chunks and
//! snapshots, fetches what looks complete into the working copy and lists
//! it. Nothing may panic, and nothing may be written outside the working
//! copy's directory.
#![no_main]

use filevol::{Datastore, DatastoreConfig, S3Settings};
use libfuzzer_sys::fuzz_target;

/// `[key length][key][value length, 2 bytes][value]…`, with a valid
/// datastore marker first half of the time.
fn objects(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        out.push((
            "cairn-datastore.json".to_owned(),
            br#"{"format":"cairn-datastore","version":1,"chunk_min":262144,"chunk_avg":1048576,"chunk_max":4194304,"zstd_level":3}"#.to_vec(),
        ));
    }
    let mut rest = data.get(1..).unwrap_or_default();
    while let [klen, tail @ ..] = rest {
        let k = (*klen as usize).min(tail.len());
        let key = String::from_utf8_lossy(&tail[..k]).into_owned();
        let tail = &tail[k..];
        let (vlen, tail) = match tail {
            [a, b, t @ ..] => (u16::from_le_bytes([*a, *b]) as usize, t),
            _ => (0, tail),
        };
        let v = vlen.min(tail.len());
        out.push((key, tail[..v].to_vec()));
        rest = &tail[v..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = bucket::Bucket::memory();
    for (k, v) in objects(data) {
        if k.is_empty() {
            continue;
        }
        let _ = bucket.put(&k, v);
    }
    let settings =
        S3Settings { cache_bytes: 1 << 20, uploads: 2, instance: "fuzz".into(), ..S3Settings::new("memory:", "memory") };
    let root = dir.path().join("ds");
    if let Ok(ds) = Datastore::init_s3(&root, DatastoreConfig::default(), settings, true, Some(bucket)) {
        if let Ok(ids) = ds.list_snapshots() {
            for id in ids {
                let _ = ds.read_manifest(&id);
            }
        }
    }
    for entry in std::fs::read_dir(dir.path()).expect("read tempdir") {
        assert_eq!(entry.expect("entry").file_name(), "ds", "an object became a path outside the datastore");
    }
});
