//! Rendering for people (aligned tables, binary-prefixed sizes) and for
//! programs (JSON on stdout).

use serde::Serialize;

pub use model::human::{count, duration_ms, size, text};

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
/// control character shown as a visible escape.
pub use model::human::escaped as path;
