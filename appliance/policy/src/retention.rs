//! The `retention` world: host bindings for each contract version, the
//! call, and the checks on the answer.
//!
//! `cairn:policy@0.1.0` passes every snapshot with its id and its tags as
//! strings and takes a decision back per snapshot with the id and a reason
//! as strings; `0.2.0` passes the group's name once, each snapshot as
//! scalars with an index into the distinct tag lists, and takes back a
//! decision per snapshot, in order, with an index into the distinct
//! reasons. Both answers become the same [`RetentionDecision`]s.

use std::collections::HashMap;

use wasmtime::component::Component;

use crate::error::PolicyError;
use crate::sandbox::{Limits, Sandbox};
use crate::{Policy, PolicyInfo, WitVersion, clip};

mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.1.0",
        world: "retention",
        additional_derives: [PartialEq, Eq],
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/since_v0.2.0",
        world: "retention",
    });
}

use v0_2::cairn::policy::types as wit2;

/// The `cairn:policy/types` interface of 0.1.0. The records the scheduler
/// and source worlds use are the same in every version, so their bindings
/// of each version share these types.
pub use v0_1::cairn::policy::types as wit;

/// A snapshot as a retention policy sees it: `time` in epoch seconds
/// UTC, `tags`, `size`, `protected`, `verify_state`, borrowed from the
/// caller's records. Its id is its group's and its time's
/// (`model::SnapshotId::text_of`), so the host writes ids out only for a
/// 0.1.0 component, whose contract passes them as strings; 0.2.0 passes
/// the group once, each snapshot's scalars, and the distinct tag lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSnapshot<'a> {
    pub time: i64,
    pub tags: &'a [String],
    pub size: u64,
    pub protected: bool,
    pub verify_state: VerifyState,
}

/// `none`, `ok` or `failed`.
pub use wit::VerifyState;

/// A validated verdict, in the order of the snapshots passed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDecision {
    pub keep: bool,
    /// Why, for a human: `keep-daily 3`, `remove`, `protected (the policy
    /// said: remove)`.
    pub reason: String,
}

/// Longest reason a policy may give.
const MAX_REASON: usize = 200;

impl From<wit::PolicyInfo> for PolicyInfo {
    fn from(i: wit::PolicyInfo) -> Self {
        PolicyInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            params: i.params.into_iter().map(|p| (p.key, p.value)).collect(),
        }
    }
}

impl From<wit2::PolicyInfo> for PolicyInfo {
    fn from(i: wit2::PolicyInfo) -> Self {
        PolicyInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            params: i.params.into_iter().map(|p| (p.key, p.value)).collect(),
        }
    }
}

pub fn describe(
    sandbox: &Sandbox,
    component: &Component,
    version: WitVersion,
    limits: &Limits,
) -> Result<PolicyInfo, PolicyError> {
    match version {
        WitVersion::V0_1 => sandbox.describe(
            limits,
            |store| v0_1::Retention::instantiate(store, component, sandbox.linker()),
            |bindings, store| bindings.call_describe(store),
        ),
        WitVersion::V0_2 => sandbox.describe(
            limits,
            |store| v0_2::Retention::instantiate(store, component, sandbox.linker()),
            |bindings, store| bindings.call_describe(store),
        ),
    }
}

pub fn decide(
    sandbox: &Sandbox,
    policy: &Policy,
    group: &str,
    snapshots: &[RetentionSnapshot],
    now: i64,
    params: &[(String, String)],
    limits: &Limits,
) -> Result<Vec<RetentionDecision>, PolicyError> {
    let call_err = |message: String| PolicyError::Call { policy: policy.label(), message };
    match policy.wit {
        WitVersion::V0_1 => {
            let params: Vec<wit::Param> =
                params.iter().map(|(k, v)| wit::Param { key: k.clone(), value: v.clone() }).collect();
            let snapshots: Vec<wit::Snapshot> = snapshots.iter().map(|s| v0_1_snapshot(group, s)).collect();
            let answer = sandbox.call(
                policy,
                limits,
                |store| v0_1::Retention::instantiate(store, &policy.component, sandbox.linker()),
                |bindings, store| bindings.call_decide(store, &snapshots, now, &params),
            )?;
            check_answer_v0_1(&snapshots, answer).map_err(call_err)
        }
        WitVersion::V0_2 => {
            let params: Vec<wit2::Param> =
                params.iter().map(|(k, v)| wit2::Param { key: k.clone(), value: v.clone() }).collect();
            let (compact, tag_sets) = compact(snapshots);
            let answer = sandbox.call(
                policy,
                limits,
                |store| v0_2::Retention::instantiate(store, &policy.component, sandbox.linker()),
                |bindings, store| bindings.call_decide(store, group, &compact, &tag_sets, now, &params),
            )?;
            check_answer_v0_2(group, snapshots, answer).map_err(call_err)
        }
    }
}

/// A snapshot as 0.1.0 passes it: with its id and its own tag list.
fn v0_1_snapshot(group: &str, s: &RetentionSnapshot) -> wit::Snapshot {
    wit::Snapshot {
        id: model::SnapshotId::text_of(group, s.time),
        time: s.time,
        tags: s.tags.to_vec(),
        size: s.size,
        protected: s.protected,
        verify_state: s.verify_state,
    }
}

/// The snapshots as 0.2.0 passes them: scalars, and an index into the
/// distinct tag lists, each listed once.
fn compact(snapshots: &[RetentionSnapshot]) -> (Vec<wit2::Snapshot>, Vec<Vec<String>>) {
    let (tag_sets, sets) = model::policy::intern(snapshots.iter().map(|s| s.tags));
    let compact = snapshots
        .iter()
        .zip(tag_sets)
        .map(|(s, tag_set)| wit2::Snapshot {
            time: s.time,
            tag_set,
            size: s.size,
            protected: s.protected,
            verify_state: match s.verify_state {
                VerifyState::None => wit2::VerifyState::None,
                VerifyState::Ok => wit2::VerifyState::Ok,
                VerifyState::Failed => wit2::VerifyState::Failed,
            },
        })
        .collect();
    (compact, sets.into_iter().map(<[String]>::to_vec).collect())
}

/// A reason a human may read: short and printable.
fn check_reason(reason: &str) -> bool {
    reason.len() <= MAX_REASON && !reason.chars().any(char::is_control)
}

/// Protected snapshots stay whatever the policy said; the reason says so.
fn verdict(protected: bool, keep: bool, reason: String) -> RetentionDecision {
    if protected && !keep {
        RetentionDecision { keep: true, reason: format!("protected (the policy said: {reason})") }
    } else {
        RetentionDecision { keep, reason }
    }
}

/// 0.2.0: exactly one decision per snapshot, in order; every reason short
/// and printable, at most one per decision, every index pointing at one.
fn check_answer_v0_2(
    group: &str,
    snapshots: &[RetentionSnapshot],
    answer: wit2::Answer,
) -> Result<Vec<RetentionDecision>, String> {
    let wit2::Answer { decisions, reasons } = answer;
    if decisions.len() != snapshots.len() {
        return Err(format!("it gave {} decisions for {} snapshots", decisions.len(), snapshots.len()));
    }
    if reasons.len() > decisions.len().max(1) {
        return Err(format!("it gave {} reasons for {} decisions", reasons.len(), decisions.len()));
    }
    if let Some(i) = reasons.iter().position(|r| !check_reason(r)) {
        return Err(format!("its reason {i} is over {MAX_REASON} bytes or not printable"));
    }
    decisions
        .iter()
        .zip(snapshots)
        .map(|(d, s)| match reasons.get(d.reason as usize) {
            Some(reason) => Ok(verdict(s.protected, d.keep, reason.clone())),
            None => Err(format!(
                "its decision for {} points at reason {}, and it gave {}",
                model::SnapshotId::text_of(group, s.time),
                d.reason,
                reasons.len()
            )),
        })
        .collect()
}

/// 0.1.0: exactly one decision per snapshot, none for an unknown id;
/// reasons short and printable.
fn check_answer_v0_1(
    snapshots: &[wit::Snapshot],
    mut answer: Vec<wit::Decision>,
) -> Result<Vec<RetentionDecision>, String> {
    // Policies usually answer in the order they were asked: then the
    // answer is checked in place. Only one that does not pays for an
    // index by id and a second list.
    let in_order = answer.len() == snapshots.len() && answer.iter().zip(snapshots).all(|(d, s)| d.id == s.id);
    if !in_order {
        answer = reorder(snapshots, answer)?;
    }
    answer
        .into_iter()
        .zip(snapshots)
        .map(|(d, s)| {
            if !check_reason(&d.reason) {
                return Err(format!("its reason for {} is over {MAX_REASON} bytes or not printable", d.id));
            }
            Ok(verdict(s.protected, d.keep, d.reason))
        })
        .collect()
}

/// An answer given out of order, put in the order of `snapshots`: an
/// error for an id that is not one of them, for a second decision about
/// one, or for one left without a decision.
fn reorder(snapshots: &[wit::Snapshot], answer: Vec<wit::Decision>) -> Result<Vec<wit::Decision>, String> {
    let index: HashMap<&str, usize> = snapshots.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut out: Vec<Option<wit::Decision>> = vec![None; snapshots.len()];
    for d in answer {
        let Some(&i) = index.get(d.id.as_str()) else {
            return Err(format!(
                "it decided about {:?}, which is not one of the snapshots it was given",
                clip(&d.id)
            ));
        };
        if out[i].is_some() {
            return Err(format!("it decided twice about {}", d.id));
        }
        out[i] = Some(d);
    }
    let missing: Vec<&str> =
        out.iter().zip(snapshots).filter(|(d, _)| d.is_none()).map(|(_, s)| s.id.as_str()).collect();
    if let Some(first) = missing.first() {
        return Err(format!("it gave no decision for {} snapshot(s), e.g. {first}", missing.len()));
    }
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(time: i64, tags: &[String]) -> RetentionSnapshot<'_> {
        RetentionSnapshot { time, tags, size: 0, protected: false, verify_state: VerifyState::None }
    }

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    /// A snapshot's id for a 0.1.0 component is the one the catalog gives
    /// it, namespaced or not.
    #[test]
    fn ids_are_the_catalogs() {
        for group in ["host/web-01", "ns/prod/vm/db"] {
            let group = model::BackupGroup::parse(group, &model::Namespace::root()).expect("group");
            let id = model::SnapshotId { group: group.clone(), time: 1_764_000_000 };
            let tags = strings(&["daily"]);
            let passed = v0_1_snapshot(&group.to_string(), &snapshot(id.time, &tags));
            assert_eq!(passed.id, id.to_string());
            assert_eq!(passed.tags, tags);
        }
    }

    /// Each distinct tag list is passed once, in the order it first
    /// appears, whether its snapshots are neighbours or not; no tags is a
    /// list of its own.
    #[test]
    fn distinct_tag_lists_are_passed_once() {
        let (daily, none, both, swapped) =
            (strings(&["daily"]), strings(&[]), strings(&["daily", "weekly"]), strings(&["weekly", "daily"]));
        let snaps = [
            snapshot(1, &daily),
            snapshot(2, &daily),
            snapshot(3, &none),
            snapshot(4, &both),
            snapshot(5, &daily),
            snapshot(6, &none),
            snapshot(7, &swapped),
        ];
        let (compact, sets) = compact(&snaps);
        assert_eq!(sets, [vec!["daily"], vec![], vec!["daily", "weekly"], vec!["weekly", "daily"]]);
        let got: Vec<(i64, u32)> = compact.iter().map(|s| (s.time, s.tag_set)).collect();
        assert_eq!(got, [(1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 1), (7, 3)]);
    }

    /// An answer that points past its reasons, gives more reasons than
    /// decisions or a decision too few is refused; a protected snapshot
    /// stays whatever the answer says.
    #[test]
    fn answers_are_checked() {
        let mut snaps = [snapshot(1, &[]), snapshot(2, &[])];
        snaps[0].protected = true;
        let answer = |decisions: &[(bool, u32)], reasons: &[&str]| wit2::Answer {
            decisions: decisions.iter().map(|&(keep, reason)| wit2::Decision { keep, reason }).collect(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        };
        let ok = check_answer_v0_2("host/t", &snaps, answer(&[(false, 0), (false, 0)], &["remove"]))
            .expect("valid");
        assert_eq!(
            ok,
            [
                RetentionDecision { keep: true, reason: "protected (the policy said: remove)".into() },
                RetentionDecision { keep: false, reason: "remove".into() },
            ]
        );
        let refused = [
            (
                answer(&[(true, 0), (true, 1)], &["keep"]),
                "for host/t/1970-01-01T00:00:02Z points at reason 1, and it gave 1",
            ),
            (answer(&[(true, 0), (true, 0)], &["a", "b", "c"]), "3 reasons for 2 decisions"),
            (answer(&[(true, 0)], &["keep"]), "1 decisions for 2 snapshots"),
            (answer(&[(true, 0), (true, 0)], &["keep\u{1b}[2J"]), "not printable"),
            (answer(&[(true, 0), (true, 0)], &[&"x".repeat(MAX_REASON + 1)]), "over 200 bytes"),
        ];
        for (a, want) in refused {
            let err = check_answer_v0_2("host/t", &snaps, a).expect_err(want);
            assert!(err.contains(want), "{err}");
        }
    }
}
