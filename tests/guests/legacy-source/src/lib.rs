//! A source handler built against `cairn:policy@0.1.0`: the host keeps
//! running components of that version. A backup yields one file,
//! `greeting.txt`, holding the `text` parameter; a restore must hand the
//! same file back, or `finish-restore` fails.

wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "source" });

use std::cell::RefCell;

use cairn::policy::types::Param;
use exports::cairn::policy::source_handler::{Features, Guest as Handler, Item, ItemKind, Step};

struct Legacy;

thread_local! {
    /// Backup: the text still to yield, and whether the item was yielded.
    /// Restore: the items and data handed back so far.
    static STATE: RefCell<(String, u8, Vec<String>, Vec<u8>)> = RefCell::default();
}

fn text(params: &[Param]) -> String {
    params.iter().find(|p| p.key == "text").map(|p| p.value.clone()).unwrap_or_default()
}

impl Guest for Legacy {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "legacy-source".into(),
            version: "0.1.0".into(),
            description: "yields one file and checks it back".into(),
            params: vec![Param { key: "text".into(), value: "what greeting.txt holds".into() }],
        }
    }
}

impl Handler for Legacy {
    fn capabilities() -> Features {
        Features { full: true, incremental: false, restore: true }
    }

    fn begin_backup(params: Vec<Param>, _since: Option<i64>) -> Result<(), String> {
        STATE.with(|s| *s.borrow_mut() = (text(&params), 0, vec![], vec![]));
        Ok(())
    }

    fn next() -> Result<Step, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.1 += 1;
            Ok(match s.1 {
                1 => Step::Item(Item {
                    path: "greeting.txt".into(),
                    kind: ItemKind::File,
                    mode: 0o644,
                    mtime: 1_764_000_000,
                    target: String::new(),
                    size: Some(s.0.len() as u64),
                }),
                2 => Step::Data(std::mem::take(&mut s.0).into_bytes()),
                _ => Step::End,
            })
        })
    }

    fn begin_restore(params: Vec<Param>) -> Result<(), String> {
        STATE.with(|s| *s.borrow_mut() = (text(&params), 0, vec![], vec![]));
        Ok(())
    }

    fn restore_item(item: Item) -> Result<(), String> {
        STATE.with(|s| s.borrow_mut().2.push(format!("{} {:o} {}", item.path, item.mode, item.mtime)));
        Ok(())
    }

    fn restore_data(data: Vec<u8>) -> Result<(), String> {
        STATE.with(|s| s.borrow_mut().3.extend_from_slice(&data));
        Ok(())
    }

    fn finish_restore() -> Result<(), String> {
        STATE.with(|s| {
            let s = s.borrow();
            let want = (vec!["greeting.txt 644 1764000000".to_owned()], s.0.as_bytes());
            if (&s.2, s.3.as_slice()) == (&want.0, want.1) {
                Ok(())
            } else {
                Err(format!("handed back {:?} holding {:?}", s.2, String::from_utf8_lossy(&s.3)))
            }
        })
    }
}

export!(Legacy);
