//! The retention host against real components built from source: the
//! examples' `cases/`, agreement with the built-in rules on random snapshot
//! sets, and a hostile guest that must be stopped within budget.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cases::{self, snap};
use policy::{Host, Limits, PolicyError, RetentionSnapshot, VerifyState, World};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn load(host: &Host, path: &Path) -> policy::Policy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    host.load(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

#[test]
fn retention_gfs_describes_itself() {
    let host = Host::new().expect("host");
    let gfs = load(&host, &policy_guests::example("retention-gfs"));
    assert_eq!(gfs.world, World::Retention);
    assert_eq!(gfs.wit_version(), "0.2.0");
    assert_eq!(gfs.info.name, "retention-gfs");
    assert!(gfs.info.params.iter().any(|(k, _)| k == "keep-daily"), "{:?}", gfs.info);
    assert_eq!(gfs.digest.len(), 64);
}

/// Every retention example passes the cases in its `cases/` directory.
#[test]
fn retention_examples_pass_their_cases() {
    let host = Host::new().expect("host");
    for example in ["retention-gfs", "retention-tags"] {
        let p = load(&host, &policy_guests::example(example));
        assert_eq!((p.world, p.info.name.as_str()), (World::Retention, example));
        let cases = policy_guests::policies_dir().join(example).join("cases");
        let ran = cases::run_all(&host, &p, &cases, &Limits::default(), "");
        assert!(ran >= 3, "only {ran} cases in {}", cases.display());
    }
}

/// What reaches the guest and what comes back survive the host unchanged:
/// on random snapshot sets and rules, `retention-gfs` (which calls
/// `model::prune::decide` itself, so this checks the plumbing, not the
/// rules: they are checked by the hand-written `cases/`) answers for each
/// snapshot, by id, what the built-in decision for it is.
#[test]
fn retention_gfs_gets_its_parameters_and_snapshots_through_the_host_unchanged() {
    let host = Host::new().expect("host");
    let gfs = load(&host, &policy_guests::example("retention-gfs"));
    let mut rng = StdRng::seed_from_u64(2026);
    for round in 0..60 {
        let n = rng.random_range(1..120);
        let start = 1_760_000_000i64;
        let mut times: Vec<i64> = (0..n).map(|_| start + rng.random_range(0..400 * 86_400)).collect();
        times.sort_unstable();
        times.dedup();
        let snaps: Vec<RetentionSnapshot> = times
            .iter()
            .map(|t| RetentionSnapshot {
                time: *t,
                tags: &[],
                size: 1,
                protected: rng.random_ratio(1, 10),
                verify_state: VerifyState::Ok,
            })
            .collect();
        let mut rules = model::prune::KeepRules::default();
        let mut params = Vec::new();
        for (name, slot) in [
            ("keep-last", &mut rules.last),
            ("keep-hourly", &mut rules.hourly),
            ("keep-daily", &mut rules.daily),
            ("keep-weekly", &mut rules.weekly),
            ("keep-monthly", &mut rules.monthly),
            ("keep-yearly", &mut rules.yearly),
        ] {
            if rng.random_ratio(1, 2) {
                *slot = rng.random_range(1..12);
                params.push((name.to_owned(), slot.to_string()));
            }
        }
        if params.is_empty() {
            rules.daily = 3;
            params.push(("keep-daily".into(), "3".into()));
        }
        let items: Vec<_> =
            snaps.iter().map(|s| model::prune::PruneItem { time: s.time, protected: s.protected }).collect();
        let builtin = model::prune::decide(&items, &rules);
        let component =
            host.retention(&gfs, "host/r", &snaps, start, &params, &Limits::default()).expect("decide");
        assert_eq!(component.len(), snaps.len(), "round {round}");
        for ((b, c), s) in builtin.iter().zip(&component).zip(&snaps) {
            assert_eq!((b.keep, &b.reason), (c.keep, &c.reason), "round {round}, {} with {params:?}", s.time);
        }
    }
}

/// CPU time this thread has used: a guest runs on the calling thread, so the
/// difference across a call is what the call cost, whatever else the
/// machine is doing at the time.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Each misbehaviour is stopped or rejected within its budget plus 50 ms of
/// CPU, with an error naming the policy; the host keeps working afterwards.
///
/// The budget is counted in CPU time, which is what the guest ran; wall
/// time also includes waiting for a core, so it is no test's business
/// (`docs/benchmarks.md` has the figures).
fn stopped_within_budget(guest: &str, label: &str, cases: &[(&str, &str)]) {
    let host = Host::new().expect("host");
    let hostile = load(&host, &policy_guests::test_guest(guest));
    let snaps: Vec<_> = ["host/h/2026-11-01T00:00:00Z", "host/h/2026-11-02T00:00:00Z"]
        .iter()
        .enumerate()
        .map(|(i, id)| snap(id, i == 0))
        .collect();
    let limits = Limits { cpu: Duration::from_millis(300), memory: 32 << 20 };
    // The first call of a component pays one-off costs (lazy initialisation
    // in the runtime); the budget is about the guest's own work.
    let warm = vec![("mode".to_owned(), "keep-all".to_owned())];
    host.retention(&hostile, "host/h", &snaps, 0, &warm, &limits).expect("keep-all");
    for (mode, want) in cases {
        let params = vec![("mode".to_owned(), mode.to_string())];
        let (started, cpu_before) = (Instant::now(), thread_cpu());
        let r = host.retention(&hostile, "host/h", &snaps, 0, &params, &limits);
        let (took, cpu) = (started.elapsed(), thread_cpu() - cpu_before);
        let err = match r {
            Err(e @ PolicyError::Call { .. }) => e.to_string(),
            other => panic!("{mode}: expected a failed call, got {other:?}"),
        };
        assert!(err.contains(label), "{mode}: error does not name the policy: {err}");
        assert!(err.contains(want), "{mode}: {err}");
        assert!(
            cpu < limits.cpu + Duration::from_millis(50),
            "{mode}: stopped after {cpu:?} of CPU (took {took:?})"
        );
    }

    // A policy that removes everything cannot remove a protected snapshot.
    let params = vec![("mode".to_owned(), "remove-all".to_owned())];
    let d = host.retention(&hostile, "host/h", &snaps, 0, &params, &limits).expect("remove-all answers");
    assert!(d[0].keep && d[0].reason.starts_with("protected"), "{d:?}");
    assert!(!d[1].keep);

    // Still healthy.
    let params = vec![("mode".to_owned(), "keep-all".to_owned())];
    let d = host.retention(&hostile, "host/h", &snaps, 0, &params, &limits).expect("keep-all");
    assert!(d.iter().all(|d| d.keep));
}

#[test]
fn hostile_guests_are_stopped_within_budget() {
    stopped_within_budget(
        "hostile-retention",
        "hostile-retention 0.2.0",
        &[
            ("loop", "CPU budget"),
            ("memory", "memory limit"),
            ("recursion", "stack"),
            ("huge", "memory limit"),
            ("extra", "3 decisions for 2 snapshots"),
            ("missing", "1 decisions for 2 snapshots"),
            ("bad-reason", "points at reason 7, and it gave 1"),
            ("many-reasons", "4 reasons for 2 decisions"),
            ("control-reason", "not printable"),
            ("trap", "trapped"),
            ("sleep", "may not sleep"),
            ("error", "refuses to decide"),
        ],
    );
}

/// A component built against the 0.1.0 contract still runs, with that
/// contract's checks: every id it was given once, no other.
#[test]
fn hostile_guests_of_the_0_1_0_contract_are_stopped_within_budget() {
    stopped_within_budget(
        "legacy-retention",
        "legacy-retention 0.1.0",
        &[
            ("loop", "CPU budget"),
            ("memory", "memory limit"),
            ("huge", "memory limit"),
            ("unknown-id", "not one of the snapshots"),
            ("repeat-id", "decided twice"),
            ("missing-id", "no decision"),
            ("control-reason", "not printable"),
            ("trap", "trapped"),
            ("error", "refuses to decide"),
        ],
    );
}

/// 0.1.0: decisions may come in any order; they are returned in the order
/// of the snapshots passed in, each with its own verdict.
#[test]
fn an_answer_in_another_order_comes_back_in_the_snapshots_order() {
    let host = Host::new().expect("host");
    let legacy = load(&host, &policy_guests::test_guest("legacy-retention"));
    assert_eq!((legacy.world, legacy.wit_version()), (World::Retention, "0.1.0"));
    let ids = ["host/h/2026-11-01T00:00:00Z", "host/h/2026-11-02T00:00:00Z", "host/h/2026-11-03T00:00:00Z"];
    let snaps: Vec<_> = ids.iter().enumerate().map(|(i, id)| snap(id, i == 2)).collect();
    let params = vec![("mode".to_owned(), "reversed".to_owned())];
    let d =
        host.retention(&legacy, "host/h", &snaps, 0, &params, &Limits::default()).expect("reversed answer");
    let got: Vec<(bool, &str)> = d.iter().map(|d| (d.keep, d.reason.as_str())).collect();
    assert_eq!(
        got,
        [(false, "position 0"), (true, "position 1"), (true, "protected (the policy said: position 2)")]
    );
}

/// 0.2.0: the group, each snapshot's time, tags, size, protection and
/// verify state reach the guest (it echoes them as reasons), snapshots
/// with the same tags share a tag set, and each decision points at its
/// own reason.
#[test]
fn what_a_0_2_0_guest_is_given_and_answers_survives_the_host() {
    let host = Host::new().expect("host");
    let hostile = load(&host, &policy_guests::test_guest("hostile-retention"));
    assert_eq!((hostile.world, hostile.wit_version()), (World::Retention, "0.2.0"));
    let tags: Vec<Vec<String>> = [&["daily"][..], &["daily"], &[], &["daily", "weekly"], &["daily"]]
        .iter()
        .map(|t| t.iter().map(|t| t.to_string()).collect())
        .collect();
    let verify =
        [VerifyState::Ok, VerifyState::None, VerifyState::Failed, VerifyState::None, VerifyState::Ok];
    let snaps: Vec<RetentionSnapshot> = (0..5i64)
        .map(|i| {
            let time = 1_764_000_000 + i * 86_400;
            RetentionSnapshot {
                tags: &tags[i as usize],
                size: 1000 + i as u64,
                verify_state: verify[i as usize],
                ..snap(&format!("ns/lab/vm/db1/{}", model::time::format_rfc3339(time)), i == 1)
            }
        })
        .collect();
    let params = vec![("mode".to_owned(), "echo".to_owned())];
    let d = host.retention(&hostile, "ns/lab/vm/db1", &snaps, 0, &params, &Limits::default()).expect("echo");
    let got: Vec<&str> = d.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        got,
        [
            "ns/lab/vm/db1 1764000000 [daily] 1000 false VerifyState::Ok",
            "ns/lab/vm/db1 1764086400 [daily] 1001 true VerifyState::None",
            "ns/lab/vm/db1 1764172800 [] 1002 false VerifyState::Failed",
            "ns/lab/vm/db1 1764259200 [daily,weekly] 1003 false VerifyState::None",
            "ns/lab/vm/db1 1764345600 [daily] 1004 false VerifyState::Ok",
        ]
    );
    let params = vec![("mode".to_owned(), "odd".to_owned())];
    let d = host.retention(&hostile, "ns/lab/vm/db1", &snaps, 0, &params, &Limits::default()).expect("odd");
    let got: Vec<(bool, &str)> = d.iter().map(|d| (d.keep, d.reason.as_str())).collect();
    assert_eq!(
        got,
        [
            (false, "position 0"),
            (true, "position 1"),
            (false, "position 2"),
            (true, "position 3"),
            (false, "position 4"),
        ]
    );
    // No snapshots: an empty answer is a whole one.
    assert_eq!(
        host.retention(&hostile, "host/none", &[], 0, &params, &Limits::default()).expect("empty"),
        []
    );
}

#[test]
fn load_refuses_what_is_not_a_policy_component() {
    let host = Host::new().expect("host");
    let limits = Limits::default();
    let core_module = b"\0asm\x01\0\0\0";
    let err = host.load(core_module, &limits).expect_err("core module").to_string();
    assert!(err.contains("core WebAssembly module"), "{err}");
    let err = host.load(b"definitely not wasm", &limits).expect_err("garbage").to_string();
    assert!(err.contains("invalid policy component"), "{err}");
    let too_big = vec![0u8; policy::MAX_COMPONENT_BYTES + 1];
    assert!(host.load(&too_big, &limits).expect_err("too big").to_string().contains("limit"));
}

/// blake3 of `wit/since_v0.1.0/policy.wit` as released.
const RELEASED_0_1_0: &str = "e179cbdd44b9fd7a1fe31746ef0b2ed83f16b8fa88835d7043eab1844d1cb4d1";

/// The contract of a released version never changes in place.
#[test]
fn released_wit_is_frozen() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let current = std::fs::read_to_string(wit.join("policy.wit")).expect("wit/policy.wit");
    assert!(current.contains("package cairn:policy@0.2.0;"), "the version changed: freeze the new one");
    let frozen = std::fs::read_to_string(wit.join("since_v0.2.0/policy.wit")).expect("frozen copy");
    assert_eq!(current, frozen, "wit/policy.wit differs from the released 0.2.0; bump the version instead");
    // Older releases stay, each with its own version, for the components
    // built against them.
    for version in policy::SUPPORTED_VERSIONS {
        let old =
            std::fs::read_to_string(wit.join(format!("since_v{version}/policy.wit"))).expect("frozen copy");
        assert!(old.contains(&format!("package cairn:policy@{version};")), "since_v{version}");
    }
    let blake = blake3::hash(std::fs::read(wit.join("since_v0.1.0/policy.wit")).expect("0.1.0").as_slice());
    assert_eq!(blake.to_hex().as_str(), RELEASED_0_1_0, "the released 0.1.0 changed in place");
}
