//! `retention-tags`: backy's retention model as a Cairn `retention` policy.
//!
//! A schedule names intervals with keep counts (`daily=1d:9`,
//! `weekly=7d:5`); backups carry the names of the intervals that were due
//! as tags. Each tag keeps the `KEEP` newest snapshots carrying it, and any
//! carrying it that are younger than `KEEP × INTERVAL`. A snapshot stays
//! while any of its tags keeps it; a `manual:` tag never expires; tags not
//! in the schedule keep nothing.

wit_bindgen::generate!({ path: "../../wit", world: "retention" });

struct Tags;

struct Rule {
    tag: String,
    interval: i64,
    keep: usize,
}

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

    fn decide(snapshots: Vec<Snapshot>, now: i64, params: Vec<Param>) -> Result<Vec<Decision>, String> {
        let rules = params.iter().map(rule).collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err("give at least one schedule tag, e.g. --param daily=1d:9".into());
        }
        let mut reason: Vec<Option<String>> = vec![None; snapshots.len()];
        for (i, s) in snapshots.iter().enumerate() {
            if let Some(t) = s.tags.iter().find(|t| t.starts_with("manual:")) {
                reason[i] = Some(format!("manual tag {t}"));
            }
        }
        for r in &rules {
            let mut with: Vec<usize> = (0..snapshots.len()).filter(|&i| snapshots[i].tags.contains(&r.tag)).collect();
            with.sort_by_key(|&i| std::cmp::Reverse(snapshots[i].time));
            let window = now.saturating_sub(r.interval.saturating_mul(r.keep as i64));
            for (rank, &i) in with.iter().enumerate() {
                if reason[i].is_some() {
                    continue;
                }
                if rank < r.keep {
                    reason[i] = Some(format!("tag {} (keep {})", r.tag, r.keep));
                } else if snapshots[i].time > window {
                    reason[i] = Some(format!("tag {} (younger than {} x {})", r.tag, r.keep, human(r.interval)));
                }
            }
        }
        Ok(snapshots
            .into_iter()
            .zip(reason)
            .map(|(s, r)| match r {
                Some(reason) => Decision { id: s.id, keep: true, reason },
                None => Decision { id: s.id, keep: false, reason: "remove: no tag keeps it".into() },
            })
            .collect())
    }
}

fn rule(p: &Param) -> Result<Rule, String> {
    let bad = || format!("{}={:?}: expected INTERVAL:KEEP, e.g. 1d:9", p.key, p.value);
    let (interval, keep) = p.value.split_once(':').ok_or_else(bad)?;
    let split = interval.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = interval[..split].parse().map_err(|_| bad())?;
    let unit = match &interval[split..] {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let keep: usize = keep.parse().map_err(|_| bad())?;
    if n <= 0 || keep == 0 || p.key.is_empty() || p.key.starts_with("manual:") {
        return Err(bad());
    }
    Ok(Rule { tag: p.key.clone(), interval: n * unit, keep })
}

fn human(seconds: i64) -> String {
    match seconds {
        s if s % 604_800 == 0 => format!("{}w", s / 604_800),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{}m", s / 60),
    }
}

export!(Tags);
