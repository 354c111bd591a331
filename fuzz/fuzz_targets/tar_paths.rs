//! Fuzz the tar writer's path checks (`engine::download::TarPaths`): for
//! any sequence of entries, what it admits never holds a path twice nor an
//! entry beneath an admitted non-directory, checked against a plain model
//! that remembers every admitted path.
#![no_main]

use std::collections::HashMap;

use engine::download::TarPaths;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut paths = TarPaths::default();
    let mut admitted: HashMap<Vec<u8>, bool> = HashMap::new();
    // One entry per line: a flag byte (odd: a directory), then the path.
    for line in data.split(|b| *b == b'\n').take(512) {
        let Some((flag, path)) = line.split_first() else { continue };
        let is_dir = flag % 2 == 1;
        if paths.admit(path, is_dir).is_err() {
            continue;
        }
        assert!(!admitted.contains_key(path), "admitted twice: {path:?}");
        for (i, b) in path.iter().enumerate() {
            if *b == b'/'
                && let Some(false) = admitted.get(&path[..i])
            {
                panic!("admitted {path:?} beneath the non-directory {:?}", &path[..i]);
            }
        }
        admitted.insert(path.to_vec(), is_dir);
    }
});
