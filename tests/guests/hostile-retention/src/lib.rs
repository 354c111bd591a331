//! A retention policy that misbehaves on purpose. The `mode` parameter
//! picks the misbehaviour; the host must stop or reject each one within
//! its budget, stay healthy, and delete nothing.

// The bindings in a module of their own, where the lint that the glue
// generated for `decide` trips (its arguments, flattened, are more than
// seven) can be allowed without allowing it for this crate's own functions.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "retention" });
}
use bindings::*;

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile-retention".into(),
            version: "0.2.0".into(),
            description: "misbehaves on purpose".into(),
            params: vec![Param { key: "mode".into(), value: "loop, memory, recursion, huge, sleep, extra, missing, bad-reason, many-reasons, control-reason, remove-all, odd, echo, trap, error, keep-all".into() }],
        }
    }

    fn decide(
        group: String,
        snapshots: Vec<Snapshot>,
        tag_sets: Vec<Vec<String>>,
        _now: i64,
        params: Vec<Param>,
    ) -> Result<Answer, String> {
        let mode = params.iter().find(|p| p.key == "mode").map(|p| p.value.clone()).unwrap_or_default();
        let answer = |keep: bool| Answer {
            decisions: snapshots.iter().map(|_| Decision { keep, reason: 0 }).collect(),
            reasons: vec!["hostile".into()],
        };
        match mode.as_str() {
            "loop" => misbehave::spin(),
            "memory" => misbehave::hoard(),
            "recursion" => Ok(Answer {
                decisions: vec![Decision { keep: misbehave::deep(std::hint::black_box(0)) > 0, reason: 0 }],
                reasons: vec![],
            }),
            "huge" => Ok(Answer {
                decisions: (0..5_000_000).map(|_| Decision { keep: true, reason: 0 }).collect(),
                reasons: (0..5_000_000).map(|_| "x".repeat(100)).collect(),
            }),
            "extra" => {
                let mut a = answer(true);
                a.decisions.push(Decision { keep: false, reason: 0 });
                Ok(a)
            }
            "missing" => {
                let mut a = answer(false);
                a.decisions.pop();
                Ok(a)
            }
            "bad-reason" => {
                let mut a = answer(false);
                a.decisions[1].reason = 7;
                Ok(a)
            }
            "many-reasons" => {
                let mut a = answer(true);
                a.reasons.extend((0..snapshots.len() + 1).map(|i| format!("spare {i}")));
                Ok(a)
            }
            "control-reason" => {
                let mut a = answer(true);
                a.reasons[0] = "keep\nrm -rf /".into();
                Ok(a)
            }
            "remove-all" => Ok(answer(false)),
            // Odd positions kept, each with a reason naming its position.
            "odd" => Ok(Answer {
                decisions: (0..snapshots.len())
                    .map(|i| Decision { keep: i % 2 == 1, reason: i as u32 })
                    .collect(),
                reasons: (0..snapshots.len()).map(|i| format!("position {i}")).collect(),
            }),
            // Keep all, each with a reason that repeats what the guest was
            // given about it: the group, time, tags, size, protected and
            // verify state.
            "echo" => {
                let reasons: Vec<String> = snapshots
                    .iter()
                    .map(|s| {
                        let tags =
                            tag_sets.get(s.tag_set as usize).map(|t| t.join(",")).unwrap_or("?".into());
                        format!("{group} {} [{tags}] {} {} {:?}", s.time, s.size, s.protected, s.verify_state)
                    })
                    .collect();
                Ok(Answer {
                    decisions: (0..snapshots.len())
                        .map(|i| Decision { keep: true, reason: i as u32 })
                        .collect(),
                    reasons,
                })
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

bindings::export!(Hostile with_types_in bindings);
