//! A retention policy written in Python (`policies-py/retention-recent`,
//! built with componentize-py) through the same host and validation path
//! as an upload: its description, the cases in its `cases/`, and agreement
//! with a plain Rust statement of its rule on random snapshot sets.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::cases::{self, snap};
use policy::{Host, Limits, RetentionSnapshot, VerifyState, World};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The budget the example states in its README and description: a call
/// (a fresh CPython instance, then `decide`) needs about 13 MiB and a few
/// milliseconds, so the defaults (1 s, 64 MiB) are what it runs with.
fn limits() -> Limits {
    Limits::default()
}

/// The component, loaded once for every test here through `Host::load`
/// (what an upload does): compiling its CPython takes Cranelift some
/// fifteen seconds of CPU.
fn loaded() -> &'static (Host, policy::Policy) {
    static LOADED: OnceLock<(Host, policy::Policy)> = OnceLock::new();
    LOADED.get_or_init(|| {
        let host = Host::new().expect("host");
        let path = policy_guests::python_example("retention-recent");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let p = host.load(&bytes, &limits()).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
        (host, p)
    })
}

fn time(t: &str) -> i64 {
    model::time::parse_rfc3339(t).unwrap_or_else(|| panic!("bad time {t}"))
}

#[test]
fn retention_recent_describes_itself() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let (_, p) = loaded();
    assert_eq!((p.world, p.wit_version()), (World::Retention, "0.2.0"));
    assert_eq!((p.info.name.as_str(), p.info.version.as_str()), ("retention-recent", "0.2.0"));
    assert!(p.info.description.contains("keep-within"), "{:?}", p.info);
    assert!(p.info.description.contains("16 MiB"), "the budget is stated: {:?}", p.info);
    let keys: Vec<&str> = p.info.params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["keep-within", "keep-last"]);
    assert!(p.info.params.iter().all(|(_, help)| help.len() > 20), "{:?}", p.info.params);
    assert_eq!(p.digest.len(), 64);
}

#[test]
fn retention_recent_passes_its_cases() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let (host, p) = loaded();
    let cases = policy_guests::python_policies_dir().join("retention-recent/cases");
    let ran = cases::run_all(host, p, &cases, &limits(), "it returned an error");
    assert!(ran >= 4, "only {ran} cases in {}", cases.display());
}

/// The rule, stated plainly: protected stays; younger than `within`
/// stays; the `last` newest unprotected ones stay; the rest go.
fn reference(
    snaps: &[RetentionSnapshot],
    now: i64,
    within: Option<(i64, &str)>,
    last: Option<usize>,
) -> Vec<(bool, String)> {
    let mut newest_first: Vec<&RetentionSnapshot> = snaps.iter().filter(|s| !s.protected).collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.time));
    let rank = |s: &RetentionSnapshot| newest_first.iter().position(|n| n.time == s.time).map(|i| i + 1);
    let mut why_not = Vec::new();
    if let Some((_, text)) = within {
        why_not.push(format!("older than {text}"));
    }
    if let Some(n) = last {
        why_not.push(format!("not among the {n} newest"));
    }
    let remove = format!("remove: {}", why_not.join(" and "));
    snaps
        .iter()
        .map(|s| match (within, last, rank(s)) {
            _ if s.protected => (true, "protected".to_owned()),
            (Some((secs, text)), ..) if now - s.time < secs => (true, format!("within {text}")),
            (_, Some(n), Some(r)) if r <= n => (true, format!("keep-last {r}")),
            _ => (false, remove.clone()),
        })
        .collect()
}

/// A random duration in the policy's syntax, with its length in seconds.
fn random_duration(rng: &mut StdRng) -> (String, i64) {
    const UNITS: [(char, i64); 5] = [('w', 604_800), ('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut text = String::new();
    let mut secs = 0;
    for (unit, len) in UNITS {
        if rng.random_ratio(1, 3) {
            let n = rng.random_range(1..40);
            text.push_str(&format!("{n}{unit}"));
            secs += n * len;
        }
    }
    if text.is_empty() {
        let n = rng.random_range(1..30);
        (format!("{n}d"), n * 86_400)
    } else {
        (text, secs)
    }
}

/// The component and [`reference`] agree on a few hundred random snapshot
/// sets and parameters.
#[test]
fn retention_recent_agrees_with_a_plain_statement_of_its_rule() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let (host, p) = loaded();
    let mut rng = StdRng::seed_from_u64(2027);
    let now = 1_790_000_000i64;
    // How often each kind of reason came up, so that the rounds are known
    // to reach every branch of the rule.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..300 {
        let (within, last) = match rng.random_range(0..3) {
            0 => (Some(random_duration(&mut rng)), None),
            1 => (None, Some(rng.random_range(1..20usize))),
            _ => (Some(random_duration(&mut rng)), Some(rng.random_range(1..20usize))),
        };
        // Up to an hour in the future (clocks differ) and two months back;
        // now and then one exactly on the edge of the window.
        let n = rng.random_range(0..80);
        let mut times: Vec<i64> = (0..n).map(|_| now - rng.random_range(-3_600..60 * 86_400)).collect();
        if let Some((_, secs)) = &within
            && rng.random_ratio(1, 3)
        {
            times.push(now - secs);
        }
        times.sort_unstable();
        times.dedup();
        let snaps: Vec<RetentionSnapshot> = times
            .iter()
            .map(|t| RetentionSnapshot {
                time: *t,
                tags: &[],
                size: 1,
                protected: rng.random_ratio(1, 8),
                verify_state: VerifyState::Ok,
            })
            .collect();
        let mut params = Vec::new();
        if let Some((text, _)) = &within {
            params.push(("keep-within".to_owned(), text.clone()));
        }
        if let Some(n) = last {
            params.push(("keep-last".to_owned(), n.to_string()));
        }
        let want = reference(&snaps, now, within.as_ref().map(|(t, s)| (*s, t.as_str())), last);
        let got = host.retention(p, "host/r", &snaps, now, &params, &limits()).expect("decide");
        assert_eq!(got.len(), snaps.len());
        for ((w, g), s) in want.iter().zip(&got).zip(&snaps) {
            assert_eq!((w.0, &w.1), (g.keep, &g.reason), "round {round}, {} with {params:?}", s.time);
            *seen.entry(g.reason.split(' ').next().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    for kind in ["protected", "within", "keep-last", "remove:"] {
        assert!(seen.get(kind).is_some_and(|&n| n > 100), "{kind}: {seen:?}");
    }
}

/// Bad parameters are the policy's error (nothing is removed), each with
/// a message that says what is wrong; the host still works afterwards.
#[test]
fn retention_recent_refuses_bad_parameters() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let (host, p) = loaded();
    let snaps = [snap("host/x/2026-11-20T03:00:00Z", false)];
    let now = time("2026-11-22T00:00:00Z");
    for (params, want) in [
        (vec![("keep-within", "0d")], "keep-within='0d': expected a duration longer than zero"),
        (vec![("keep-within", "7 days")], "keep-within='7 days': expected a duration"),
        (vec![("keep-last", "0")], "keep-last='0': expected a whole number of at least 1"),
        (vec![("keep-last", "+3")], "keep-last='+3': expected a whole number"),
        (vec![("keep-last", "١٢")], "expected a whole number"),
        (vec![("keep-last", "2"), ("keep-last", "3")], "keep-last is given twice"),
        (vec![("keep-hourly", "3")], "unknown parameter 'keep-hourly'"),
    ] {
        let params: Vec<(String, String)> =
            params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let err = host
            .retention(p, "host/r", &snaps, now, &params, &limits())
            .expect_err("bad parameters")
            .to_string();
        assert!(err.contains("policy retention-recent 0.2.0") && err.contains(want), "{params:?}: {err}");
    }
    let params = vec![("keep-last".to_owned(), "1".to_owned())];
    let d = host.retention(p, "host/r", &snaps, now, &params, &limits()).expect("good parameters");
    assert_eq!((d[0].keep, d[0].reason.as_str()), (true, "keep-last 1"));
}

/// What the README and the description promise: a thousand snapshots
/// decided within 16 MiB (the CPU figure is left to the default second:
/// the budget counts wall time, and other tests share the cores).
#[test]
fn retention_recent_fits_in_16_mib() {
    if !testkit::needs(testkit::Need::Python) {
        return;
    }
    let (host, p) = loaded();
    let now = 1_790_000_000i64;
    let snaps: Vec<RetentionSnapshot> = (0..1000)
        .map(|i| snap(&format!("host/m/{}", model::time::format_rfc3339(now - i * 3_600)), i % 50 == 0))
        .collect();
    let params =
        vec![("keep-within".to_owned(), "7d".to_owned()), ("keep-last".to_owned(), "200".to_owned())];
    let small = Limits { memory: 16 << 20, ..limits() };
    let d = host.retention(p, "host/r", &snaps, now, &params, &small).expect("decide within 16 MiB");
    let kept = d.iter().filter(|d| d.keep).count();
    // The 200 newest unprotected (which cover the 168 within 7d), and the
    // 20 protected, which take no slot.
    assert_eq!(kept, 200 + 20, "{:?}", &d[..3]);
}
