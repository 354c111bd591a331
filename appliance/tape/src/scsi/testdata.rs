//! Loading the recorded responses under `tests/fixtures/` in unit tests.

use std::path::Path;

/// The bytes of fixture `name`: hex pairs separated by white space, with
/// `#` starting a comment that runs to the end of the line.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
        .map(|pair| u8::from_str_radix(pair, 16).unwrap_or_else(|e| panic!("{name}: {pair:?}: {e}")))
        .collect()
}
