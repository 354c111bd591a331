//! The retention examples' hand-written cases (`cases/*.json` beside each
//! Rust and Python example), read and run the same way for every example:
//! the snapshots and parameters go to the policy, and the answer must be
//! the expected decision for each snapshot, by id and in order, or an
//! error that says what the case expects.

use std::collections::BTreeMap;
use std::path::Path;

use policy::{Host, Limits, RetentionSnapshot, VerifyState};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    now: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    snapshots: Vec<CaseSnapshot>,
    #[serde(default)]
    expect: Vec<Expect>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct CaseSnapshot {
    id: String,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Expect {
    id: String,
    keep: bool,
    reason: String,
}

/// The snapshot with the id `GROUP/TIME`: the time, no tags.
pub fn snap(id: &str, protected: bool) -> RetentionSnapshot<'static> {
    let time = id.rsplit('/').next().and_then(model::time::parse_rfc3339).expect("id ends in a time");
    RetentionSnapshot { time, tags: &[], size: 0, protected, verify_state: VerifyState::None }
}

/// Run every case in `dir` against `p`; returns how many ran. An error
/// case's text must hold `error_says` too (a guest's own error is
/// reported as such).
pub fn run_all(host: &Host, p: &policy::Policy, dir: &Path, limits: &Limits, error_says: &str) -> usize {
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        run(host, p, &entry.expect("entry").path(), limits, error_says);
        ran += 1;
    }
    ran
}

fn run(host: &Host, p: &policy::Policy, path: &Path, limits: &Limits, error_says: &str) {
    let case: Case = serde_json::from_slice(&std::fs::read(path).expect("read case")).expect("case json");
    let snaps: Vec<_> = case
        .snapshots
        .iter()
        .map(|s| RetentionSnapshot { tags: &s.tags, ..snap(&s.id, s.protected) })
        .collect();
    let params: Vec<(String, String)> = case.params.into_iter().collect();
    let now = model::time::parse_rfc3339(&case.now).expect("now");
    // Every case is about one group: its snapshots' ids without the time.
    let group = case.snapshots.first().and_then(|s| s.id.rsplit_once('/')).map_or("host/none", |(g, _)| g);
    match (host.retention(p, group, &snaps, now, &params, limits), case.error) {
        (Ok(d), None) => {
            let got: Vec<Expect> = d
                .into_iter()
                .zip(&case.snapshots)
                .map(|(d, s)| Expect { id: s.id.clone(), keep: d.keep, reason: d.reason })
                .collect();
            assert_eq!(got, case.expect, "{}", path.display());
        }
        (Err(e), Some(want)) => {
            let e = e.to_string();
            assert!(e.contains(error_says) && e.contains(&want), "{}: {e}", path.display());
        }
        (got, want) => panic!("{}: got {got:?}, wanted error {want:?}", path.display()),
    }
}
