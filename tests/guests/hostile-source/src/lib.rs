//! A source handler that misbehaves on purpose, or probes its sandbox. The
//! `mode` parameter picks what `begin-backup` and `next` do; the host must
//! stop each misbehaviour within its budget and grant nothing it was not
//! asked to.

wit_bindgen::generate!({ path: "../../../wit", world: "source" });

use std::cell::RefCell;

mod misbehave {
    include!("../../misbehave.rs");
}

/// `wasi:random/random`, which the host serves (the `source` world does not
/// name it; the standard library uses it without exposing it).
mod rng {
    wit_bindgen::generate!({
        inline: "package wasi:random@0.2.0;
                 interface random {
                     get-random-bytes: func(len: u64) -> list<u8>;
                     get-random-u64: func() -> u64;
                 }
                 world rng { import random; }",
        world: "rng",
    });
}

use cairn::policy::types::Param;
use exports::cairn::policy::source_handler::{Features, Guest as Handler, Item, ItemKind, Step};

struct Hostile;

thread_local! {
    /// (mode, file, steps taken).
    static STATE: RefCell<(String, String, u32)> = const { RefCell::new((String::new(), String::new(), 0)) };
}

impl Guest for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile-source".into(),
            version: "0.1.0".into(),
            description: "misbehaves on purpose".into(),
            params: vec![
                Param {
                    key: "mode".into(),
                    value: "read, write, loop, memory, huge-step, bad-path, random".into(),
                },
                Param { key: "file".into(), value: "the file `read` and `write` use".into() },
            ],
        }
    }
}

fn item(path: &str) -> Item {
    Item { path: path.into(), kind: ItemKind::File, mode: 0o600, mtime: 0, target: String::new(), size: None }
}

impl Handler for Hostile {
    fn capabilities() -> Features {
        Features { full: true, incremental: false, restore: false }
    }

    fn begin_backup(params: Vec<Param>, _since: Option<i64>) -> Result<(), String> {
        let get = |k: &str| params.iter().find(|p| p.key == k).map(|p| p.value.clone()).unwrap_or_default();
        let (mode, file) = (get("mode"), get("file"));
        match mode.as_str() {
            "memory" => misbehave::hoard(),
            "write" => std::fs::write(&file, b"written by a source handler")
                .map_err(|e| format!("write {file}: {e}"))?,
            _ => {}
        }
        STATE.with(|s| *s.borrow_mut() = (mode, file, 0));
        Ok(())
    }

    fn next() -> Result<Step, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.2 += 1;
            let (mode, file, n) = (s.0.as_str(), s.1.as_str(), s.2);
            Ok(match (mode, n) {
                ("read", 1) => Step::Item(item("copy")),
                ("read", 2) => Step::Data(std::fs::read(file).map_err(|e| format!("read {file}: {e}"))?),
                ("loop", _) => misbehave::spin(),
                ("huge-step", 1) => Step::Item(item("big")),
                ("huge-step", _) => Step::Data(vec![1u8; 8 << 20]),
                ("bad-path", 1) => Step::Item(item("../../etc/cron.d/evil")),
                // 16 bytes of `wasi:random`, then 8 of a hash keyed from
                // `insecure-seed` (the standard library's HashMap keys).
                ("random", 1) => Step::Item(item("random")),
                ("random", 2) => {
                    use std::hash::BuildHasher;
                    let mut bytes = rng::wasi::random::random::get_random_bytes(16);
                    let keyed = std::collections::hash_map::RandomState::new().hash_one(0u64);
                    bytes.extend_from_slice(&keyed.to_le_bytes());
                    Step::Data(bytes)
                }
                _ => Step::End,
            })
        })
    }

    fn begin_restore(_params: Vec<Param>) -> Result<(), String> {
        Err("cannot restore".into())
    }

    fn restore_item(_item: Item) -> Result<(), String> {
        Err("cannot restore".into())
    }

    fn restore_data(_data: Vec<u8>) -> Result<(), String> {
        Err("cannot restore".into())
    }

    fn finish_restore() -> Result<(), String> {
        Err("cannot restore".into())
    }
}

export!(Hostile);
