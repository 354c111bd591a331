//! A retention policy built against `cairn:policy@0.1.0`, the contract
//! before 0.2.0, that misbehaves on purpose: the host keeps running
//! components of that version, with the checks of that version (every id
//! once, no unknown id). The `mode` parameter picks the misbehaviour.

wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "retention" });

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "legacy-retention".into(),
            version: "0.1.0".into(),
            description: "misbehaves on purpose".into(),
            params: vec![Param { key: "mode".into(), value: "loop, memory, recursion, huge, sleep, unknown-id, repeat-id, missing-id, remove-all, trap, error, keep-all".into() }],
        }
    }

    fn decide(snapshots: Vec<Snapshot>, _now: i64, params: Vec<Param>) -> Result<Vec<Decision>, String> {
        let mode = params.iter().find(|p| p.key == "mode").map(|p| p.value.clone()).unwrap_or_default();
        let answer = |keep: bool| -> Vec<Decision> {
            snapshots.iter().map(|s| Decision { id: s.id.clone(), keep, reason: "hostile".into() }).collect()
        };
        match mode.as_str() {
            "loop" => misbehave::spin(),
            "memory" => misbehave::hoard(),
            "recursion" => Ok(vec![Decision {
                id: String::new(),
                keep: misbehave::deep(std::hint::black_box(0)) > 0,
                reason: String::new(),
            }]),
            "huge" => Ok((0..5_000_000)
                .map(|i| Decision { id: format!("not/a/snapshot-{i}"), keep: true, reason: "x".repeat(100) })
                .collect()),
            "unknown-id" => {
                let mut a = answer(true);
                a.push(Decision {
                    id: "host/other/2026-01-01T00:00:00Z".into(),
                    keep: false,
                    reason: "?".into(),
                });
                Ok(a)
            }
            "repeat-id" => {
                let mut a = answer(true);
                let first = a[0].clone();
                a.push(first);
                Ok(a)
            }
            "missing-id" => {
                let mut a = answer(false);
                a.pop();
                Ok(a)
            }
            "remove-all" => Ok(answer(false)),
            // A valid answer, odd positions kept, given back to front.
            "reversed" => Ok(snapshots
                .iter()
                .enumerate()
                .rev()
                .map(|(i, s)| Decision {
                    id: s.id.clone(),
                    keep: i % 2 == 1,
                    reason: format!("position {i}"),
                })
                .collect()),
            "control-reason" => {
                let mut a = answer(true);
                a[0].reason = "keep\nrm -rf /".into();
                Ok(a)
            }
            "trap" => panic!("hostile policy traps on purpose"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3_600));
                Ok(answer(true))
            }
            "error" => Err("this policy refuses to decide".into()),
            _ => Ok(answer(true)),
        }
    }
}

mod misbehave {
    include!("../../misbehave.rs");
}

export!(Hostile);
