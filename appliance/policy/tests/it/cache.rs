//! The compiled-artifact cache: a policy loaded from its cached artifact
//! decides exactly like one compiled afresh, and an artifact that is
//! damaged, of another component, of another build, or not sealed with the
//! host's cache key is never loaded: the component is compiled again and a
//! good artifact handed back.

use policy::{CacheKey, Host, Limits, Origin, Policy, Ready, RetentionSnapshot, VerifyState};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn component(name: &str) -> Vec<u8> {
    std::fs::read(policy_guests::example(name)).expect("component")
}

/// The key every host of these tests shares, as processes of one
/// installation share the key file.
fn key() -> CacheKey {
    CacheKey::from_bytes(*b"the cache key of these tests....")
}

/// A host that caches, with [`key`].
fn host() -> Host {
    Host::new().expect("host").with_cache_key(key())
}

fn compiled(host: &Host, bytes: &[u8]) -> (Policy, Vec<u8>) {
    let Ready { policy, origin, artifact } =
        host.load_with_cache(bytes, None, &Limits::default()).expect("compile");
    assert_eq!(origin, Origin::Compiled { cache_problem: None });
    (policy, artifact.expect("a compiled policy comes with its artifact"))
}

/// Snapshots, parameters and `now` for one decision.
type Round = (Vec<RetentionSnapshot<'static>>, Vec<(String, String)>, i64);

/// Snapshot sets and rules for comparing two policies' decisions.
fn rounds() -> Vec<Round> {
    let mut rng = StdRng::seed_from_u64(1202);
    (0..20)
        .map(|_| {
            let start = 1_760_000_000i64;
            let mut times: Vec<i64> =
                (0..rng.random_range(1..80)).map(|_| start + rng.random_range(0..400 * 86_400)).collect();
            times.sort_unstable();
            times.dedup();
            let snaps = times
                .iter()
                .map(|t| RetentionSnapshot {
                    time: *t,
                    tags: &[],
                    size: 1,
                    protected: rng.random_ratio(1, 8),
                    verify_state: VerifyState::Ok,
                })
                .collect();
            let params = ["keep-last", "keep-daily", "keep-weekly", "keep-monthly"]
                .iter()
                .map(|k| (k.to_string(), rng.random_range(1..6).to_string()))
                .collect();
            (snaps, params, start + 400 * 86_400)
        })
        .collect()
}

fn same_decisions(host_a: &Host, a: &Policy, host_b: &Host, b: &Policy) {
    let limits = Limits::default();
    for (snaps, params, now) in rounds() {
        let da = host_a.retention(a, "host/c", &snaps, now, &params, &limits).expect("decide");
        let db = host_b.retention(b, "host/c", &snaps, now, &params, &limits).expect("decide");
        assert_eq!(da, db, "{params:?}");
    }
}

#[test]
fn a_cached_load_decides_like_a_fresh_compile() {
    let bytes = component("retention-gfs");
    let fresh_host = host();
    let (fresh, artifact) = compiled(&fresh_host, &bytes);
    // Another host stands for another process of the same build.
    let host = host();
    assert_eq!(host.artifact_tag(), fresh_host.artifact_tag());
    assert_eq!(host.artifact_tag().len(), 16);
    let ready = host.load_with_cache(&bytes, Some(&artifact), &Limits::default()).expect("cached load");
    assert_eq!(ready.origin, Origin::Cached);
    assert!(ready.artifact.is_none(), "nothing to rewrite after a cached load");
    let cached = ready.policy;
    assert_eq!(
        (cached.world, cached.wit_version(), &cached.digest, &cached.info),
        (fresh.world, fresh.wit_version(), &fresh.digest, &fresh.info)
    );
    same_decisions(&fresh_host, &fresh, &host, &cached);
    host.instantiate(&cached, &Limits::default()).expect("instantiate");
}

#[test]
fn an_unusable_artifact_falls_back_to_compiling() {
    let bytes = component("retention-gfs");
    let host = host();
    let (fresh, good) = compiled(&host, &bytes);
    let (_, of_tags) = compiled(&host, &component("retention-tags"));
    let flip = |at: usize| {
        let mut a = good.clone();
        a[at] ^= 0x40;
        a
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a Cairn"),
        ("garbage", b"definitely not an artifact".repeat(20), "not a Cairn"),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("extended", [good.as_slice(), b"more"].concat(), "extended"),
        ("a flipped payload byte", flip(good.len() - 100), "corrupt"),
        ("a flipped recorded MAC", flip(90), "corrupt"),
        ("another build's fingerprint", flip(8), "another build"),
        ("another component's artifact", of_tags, "another component"),
    ];
    for (what, artifact, why) in cases {
        let ready = host.load_with_cache(&bytes, Some(&artifact), &Limits::default()).expect(what);
        match &ready.origin {
            Origin::Compiled { cache_problem: Some(problem) } => {
                assert!(problem.contains(why), "{what}: {problem}")
            }
            other => panic!("{what}: loaded as {other:?}"),
        }
        let rewritten = ready.artifact.expect("a fresh artifact to cache");
        same_decisions(&host, &fresh, &host, &ready.policy);
        // The artifact handed back is a good one.
        let again = host.load_with_cache(&bytes, Some(&rewritten), &Limits::default()).expect("reload");
        assert_eq!(again.origin, Origin::Cached, "{what}");
    }
}

/// The cache never hides a bad component: it is refused as before.
#[test]
fn a_bad_component_is_refused_whatever_the_cache_holds() {
    let host = host();
    let (_, gfs) = compiled(&host, &component("retention-gfs"));
    let err = host
        .load_with_cache(b"\0asm\x01\0\0\0", Some(&gfs), &Limits::default())
        .expect_err("core module")
        .to_string();
    assert!(err.contains("core WebAssembly module"), "{err}");
    let err = host.load_with_cache(b"not wasm", None, &Limits::default()).expect_err("garbage").to_string();
    assert!(err.contains("invalid policy component"), "{err}");
}

/// What whoever can write the cache can make without the key: the
/// compiled code of another component, relabelled as this one's and
/// checksummed as format version 1 did (blake3 of the payload, no key), or
/// an artifact sealed with another key. The old check accepted the first
/// and ran the other component's code; now neither is loaded: the
/// component is compiled again, and the artifact handed back to replace
/// the planted one is sealed with the key.
#[test]
fn an_artifact_not_sealed_with_the_key_is_never_loaded() {
    let (gfs, tags) = (component("retention-gfs"), component("retention-tags"));
    let host = host();
    let (_, good) = compiled(&host, &gfs);
    let (_, of_tags) = compiled(&host, &tags);
    let payload = &of_tags[112..];
    let forge = |magic: &[u8]| {
        let mut a = good[..80].to_vec();
        a[..8].copy_from_slice(magic);
        a[72..80].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        a.extend_from_slice(blake3::hash(payload).as_bytes());
        a.extend_from_slice(payload);
        a
    };
    let other_key = Host::new().expect("host").with_cache_key(CacheKey::from_bytes([9; 32]));
    let (_, foreign) = compiled(&other_key, &gfs);
    let cases = [
        ("tags' code, unkeyed checksum", forge(b"CAIRNPA\x02"), "sealed with another key"),
        ("tags' code, format version 1", forge(b"CAIRNPA\x01"), "format version 1"),
        ("sealed with another key", foreign.clone(), "sealed with another key"),
    ];
    for (what, planted, why) in cases {
        let ready = host.load_with_cache(&gfs, Some(&planted), &Limits::default()).expect(what);
        match &ready.origin {
            Origin::Compiled { cache_problem: Some(problem) } => {
                assert!(problem.contains(why), "{what}: {problem}")
            }
            other => panic!("{what}: loaded as {other:?}"),
        }
        assert_eq!(ready.policy.info.name, "retention-gfs", "{what}: the planted code did not run");
        let replacement = ready.artifact.expect("an artifact to replace the planted one");
        assert_ne!(replacement, planted);
        assert_eq!(
            host.load_with_cache(&gfs, Some(&replacement), &Limits::default()).expect("reload").origin,
            Origin::Cached
        );
    }
    // The other host's own artifact is good for it.
    let theirs = other_key.load_with_cache(&gfs, Some(&foreign), &Limits::default()).expect("load");
    assert_eq!(theirs.origin, Origin::Cached);
    // A host without a key neither loads nor hands back artifacts.
    let keyless = Host::new().expect("host");
    let ready = keyless.load_with_cache(&gfs, Some(&good), &Limits::default()).expect("load");
    assert!(matches!(ready.origin, Origin::Compiled { cache_problem: Some(_) }), "{:?}", ready.origin);
    assert!(ready.artifact.is_none());
}
