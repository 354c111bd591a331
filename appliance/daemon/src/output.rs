//! Rendering for people (aligned tables, binary-prefixed sizes) and for
//! programs (JSON on stdout).

use serde::Serialize;

pub use model::words::count;

/// `1.5 GiB`, `312 KiB`, `17 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// `850 ms`, `12.3 s`, `4m 05s`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// Print rows as a table with a header; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        // Cells may hold tags, names and notes a client wrote.
        println!("{}", text(out.trim_end()));
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Print a value as one line of JSON.
pub fn json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("serializable"));
}

/// Raw path bytes (or any text from a snapshot) for display, every
/// control character shown as a visible escape (see
/// [`engine::restore::escaped`]).
pub fn path(bytes: &[u8]) -> String {
    engine::restore::escaped(bytes)
}

/// A message for the terminal whose parts may come from a snapshot or a
/// server: control characters escaped as in [`path`], except the line
/// breaks of a message of several lines.
/// (Backslashes are left alone: the paths in such a message are escaped
/// already.)
pub fn text(message: &str) -> String {
    let mut one = [0u8; 4];
    let shown = |c: char, one: &mut [u8; 4]| match c {
        '\n' | '\\' => c.to_string(),
        c => path(c.encode_utf8(one).as_bytes()),
    };
    message.chars().map(|c| shown(c, &mut one)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_paths() {
        assert_eq!(size(17), "17 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(duration_ms(65_000), "1m 05s");
        assert_eq!(path(b"caf\xe9\nx"), "caf\\xe9\\nx");
        assert_eq!(text("a \\x1b b\x1b]0;t\x07\u{9b}\nnext"), "a \\x1b b\\x1b]0;t\\x07\\u{009b}\nnext");
    }
}
