//! The `retention` world: host bindings, the call, and the checks on the
//! answer.

use std::collections::HashMap;

use wasmtime::component::Component;

use crate::error::PolicyError;
use crate::sandbox::{Limits, Sandbox, describe_failure};
use crate::{Policy, PolicyInfo, clip};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "retention",
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::Retention;
/// The `cairn:policy/types` interface, shared by every world's bindings.
pub use bindings::cairn::policy::types as wit;

/// A snapshot as a retention policy sees it (`id`, `time` in epoch
/// seconds UTC, `tags`, `size`, `protected`, `verify_state`): the WIT
/// record itself, so a call passes the caller's snapshots to the guest
/// without copying them first.
pub use wit::Snapshot as RetentionSnapshot;
/// `none`, `ok` or `failed`.
pub use wit::VerifyState;

/// A validated verdict (`id`, `keep`, `reason`), in the order of the
/// snapshots passed in: the WIT record itself, so the answer the guest
/// gave in order is checked and returned where it was lifted, without
/// another copy of every decision.
pub use wit::Decision as RetentionDecision;

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

pub fn describe(
    sandbox: &Sandbox,
    component: &Component,
    limits: &Limits,
) -> Result<PolicyInfo, PolicyError> {
    sandbox.describe(
        limits,
        |store| Retention::instantiate(store, component, sandbox.linker()),
        |bindings, store| bindings.call_describe(store),
    )
}

pub fn decide(
    sandbox: &Sandbox,
    policy: &Policy,
    snapshots: &[RetentionSnapshot],
    now: i64,
    params: &[(String, String)],
    limits: &Limits,
) -> Result<Vec<RetentionDecision>, PolicyError> {
    let call_err = |message: String| PolicyError::Call { policy: policy.label(), message };
    let params: Vec<wit::Param> =
        params.iter().map(|(k, v)| wit::Param { key: k.clone(), value: v.clone() }).collect();
    let mut store = sandbox.store(limits);
    let bindings = Retention::instantiate(&mut store, &policy.component, sandbox.linker())
        .map_err(|e| call_err(describe_failure(&e, limits, &store.data().stderr)))?;
    let answer = match bindings.call_decide(&mut store, snapshots, now, &params) {
        Ok(Ok(a)) => a,
        Ok(Err(message)) => return Err(call_err(format!("it returned an error: {}", crate::clip(&message)))),
        Err(e) => return Err(call_err(describe_failure(&e, limits, &store.data().stderr))),
    };
    drop(store);
    check_answer(snapshots, answer).map_err(call_err)
}

/// Exactly one decision per snapshot, none for an unknown id; reasons
/// short and printable; protected snapshots kept whatever was said.
fn check_answer(
    snapshots: &[RetentionSnapshot],
    mut answer: Vec<wit::Decision>,
) -> Result<Vec<RetentionDecision>, String> {
    // Policies usually answer in the order they were asked: then the
    // answer is checked and returned in place. Only one that does not
    // pays for an index by id and a second list.
    let in_order = answer.len() == snapshots.len() && answer.iter().zip(snapshots).all(|(d, s)| d.id == s.id);
    if !in_order {
        answer = reorder(snapshots, answer)?;
    }
    for (d, s) in answer.iter_mut().zip(snapshots) {
        if d.reason.len() > MAX_REASON || d.reason.chars().any(char::is_control) {
            return Err(format!("its reason for {} is over {MAX_REASON} bytes or not printable", d.id));
        }
        if s.protected && !d.keep {
            d.keep = true;
            d.reason = format!("protected (the policy said: {})", d.reason);
        }
    }
    Ok(answer)
}

/// An answer given out of order, put in the order of `snapshots`: an
/// error for an id that is not one of them, for a second decision about
/// one, or for one left without a decision.
fn reorder(
    snapshots: &[RetentionSnapshot],
    answer: Vec<wit::Decision>,
) -> Result<Vec<wit::Decision>, String> {
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
