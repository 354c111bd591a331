//! `retention-gfs`: PBS-style keep-last, -hourly, -daily, -weekly,
//! -monthly and -yearly retention as a Cairn `retention` policy, with the
//! same code and the same reasons as the built-in `cairn prune --keep-*`.
//!
//! Parameters are named like the built-in flags: `keep-daily=7`,
//! `keep-weekly=4`, …; at least one must be given.

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

use model::policy::intern_reasons;
use model::prune::{KeepRules, PruneItem, Rule, decide};

struct Gfs;

impl Guest for Gfs {
    fn describe() -> PolicyInfo {
        let help = |rule: Rule, what: &str| Param {
            key: rule.name().trim_start_matches("--").to_owned(),
            value: format!("keep the newest snapshot of each of the last N {what}"),
        };
        PolicyInfo {
            name: "retention-gfs".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Keep the newest snapshot per hour, day, ISO week, month and year, as Proxmox Backup Server does; rules add up, protected snapshots always stay.".into(),
            params: vec![
                Param { key: "keep-last".into(), value: "keep the N newest snapshots".into() },
                help(Rule::Hourly, "hours"),
                help(Rule::Daily, "days"),
                help(Rule::Weekly, "ISO weeks"),
                help(Rule::Monthly, "months"),
                help(Rule::Yearly, "years"),
            ],
        }
    }

    fn decide(
        _group: String,
        snapshots: Vec<Snapshot>,
        _tag_sets: Vec<Vec<String>>,
        _now: i64,
        params: Vec<Param>,
    ) -> Result<Answer, String> {
        let rules = rules(&params)?;
        let items: Vec<PruneItem> =
            snapshots.iter().map(|s| PruneItem { time: s.time, protected: s.protected }).collect();
        let (verdicts, reasons) =
            intern_reasons(decide(&items, &rules).into_iter().map(|d| (d.keep, d.reason)));
        Ok(Answer {
            decisions: verdicts.into_iter().map(|(keep, reason)| Decision { keep, reason }).collect(),
            reasons,
        })
    }
}

fn rules(params: &[Param]) -> Result<KeepRules, String> {
    let mut rules = KeepRules::default();
    for p in params {
        let n: u32 =
            p.value.parse().map_err(|_| format!("{}={:?}: expected a whole number", p.key, p.value))?;
        let slot = match p.key.as_str() {
            "keep-last" => &mut rules.last,
            "keep-hourly" => &mut rules.hourly,
            "keep-daily" => &mut rules.daily,
            "keep-weekly" => &mut rules.weekly,
            "keep-monthly" => &mut rules.monthly,
            "keep-yearly" => &mut rules.yearly,
            other => return Err(format!("unknown parameter {other:?} (keep-last … keep-yearly)")),
        };
        *slot = n;
    }
    if rules.is_empty() {
        return Err("give at least one keep rule, e.g. --param keep-daily=7".into());
    }
    Ok(rules)
}

bindings::export!(Gfs with_types_in bindings);
