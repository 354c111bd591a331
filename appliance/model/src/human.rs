//! Sizes, durations, and text from snapshots and servers made safe and
//! readable for people: the CLI's tables and the server's pages say the
//! same.

pub use crate::words::count;

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

/// An archive path (or any bytes from a snapshot) made safe to show on a
/// terminal or in a log line: valid UTF-8 stays as it is except that `\`
/// becomes `\\`, `\n`, `\r` and `\t` are written so, other C0 controls
/// (ESC, BEL, …) and DEL as `\xNN`, C1 controls and the Unicode
/// direction marks, embeddings, overrides and isolates as `\u{NNNN}`;
/// bytes that are not UTF-8 as `\xNN`.
pub fn escaped(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    // Most paths are printable ASCII with no backslash: they stay as
    // they are, and one pass over the bytes shows it (a restore escapes
    // the path of every file it makes, for its messages).
    if bytes.iter().all(|&b| (b' '..=b'~').contains(&b) && b != b'\\')
        && let Ok(ascii) = std::str::from_utf8(bytes)
    {
        return ascii.to_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0'..='\x1f' | '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                '\u{80}'..='\u{9f}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A message for the terminal whose parts may come from a snapshot or a
/// server: control characters escaped as in [`escaped`], except the line
/// breaks of a message of several lines.
/// (Backslashes are left alone: the paths in such a message are escaped
/// already.)
pub fn text(message: &str) -> String {
    let mut one = [0u8; 4];
    let shown = |c: char, one: &mut [u8; 4]| match c {
        '\n' | '\\' => c.to_string(),
        c => escaped(c.encode_utf8(one).as_bytes()),
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
        assert_eq!(escaped(b"caf\xe9\nx"), "caf\\xe9\\nx");
        // Printable ASCII stays as it is; a backslash or a control among
        // it is escaped all the same.
        let printable: Vec<u8> = (b' '..=b'~').filter(|&b| b != b'\\').collect();
        assert_eq!(escaped(&printable).as_bytes(), printable);
        assert_eq!(escaped(b"a\\b"), "a\\\\b");
        assert_eq!(escaped(b"a\x7fb\x1f"), "a\\x7fb\\x1f");
        assert_eq!(escaped("dir/été\u{202e}".as_bytes()), "dir/été\\u{202e}");
        assert_eq!(text("a \\x1b b\x1b]0;t\x07\u{9b}\nnext"), "a \\x1b b\\x1b]0;t\\x07\\u{009b}\nnext");
    }
}
