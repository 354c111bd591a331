//! `retention-tags`: backy's retention model as a Cairn `retention` policy.
//!
//! A schedule names intervals with keep counts (`daily=1d:9`,
//! `weekly=7d:5`); backups carry the names of the intervals that were due
//! as tags. Each tag keeps the `KEEP` newest snapshots carrying it, and any
//! carrying it that are younger than `KEEP × INTERVAL`. A snapshot stays
//! while any of its tags keeps it; a `manual:` tag never expires; tags not
//! in the schedule keep nothing.

// The bindings in a module of their own, where the lint that the glue
// generated for `decide` trips (its arguments, flattened, are more than
// seven) can be allowed without allowing it for this crate's own functions.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "retention" });
}
use bindings::*;

// An instance serves one call and is thrown away: allocating is a pointer
// bump, and nothing is put back on a free list (oneshot-alloc).
#[global_allocator]
static ALLOC: oneshot_alloc::OneShot = oneshot_alloc::OneShot::new();

use model::backy::{TaggedSnapshot, keep_by_tags, parse_interval};
use model::policy::intern_reasons;

struct Tags;

impl Guest for Tags {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "retention-tags".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "backy's model: each schedule tag keeps its KEEP newest snapshots and any younger than KEEP x INTERVAL; manual: tags never expire.".into(),
            params: vec![Param {
                key: "TAG".into(),
                value: "INTERVAL:KEEP for each schedule tag, e.g. daily=1d:9 weekly=7d:5 (units m, h, d, w)".into(),
            }],
        }
    }

    fn decide(
        _group: String,
        snapshots: Vec<Snapshot>,
        tag_sets: Vec<Vec<String>>,
        now: i64,
        params: Vec<Param>,
    ) -> Result<Answer, String> {
        // The same rules as a job's built-in tag retention.
        let rules =
            params.iter().map(|p| parse_interval(&p.key, &p.value, true)).collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err("give at least one schedule tag, e.g. --param daily=1d:9".into());
        }
        let tagged = snapshots
            .iter()
            .map(|s| {
                let tags =
                    tag_sets.get(s.tag_set as usize).ok_or("a snapshot's tag set is not in the call")?;
                Ok(TaggedSnapshot { time: s.time, tags: tags.clone(), protected: s.protected })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let (verdicts, reasons) = intern_reasons(keep_by_tags(&tagged, &rules, now));
        Ok(Answer {
            decisions: verdicts.into_iter().map(|(keep, reason)| Decision { keep, reason }).collect(),
            reasons,
        })
    }
}

bindings::export!(Tags with_types_in bindings);
