//! Version order. systemd-boot puts the entry with the highest version
//! first (`strverscmp_improved`); the updater must agree with it, so it
//! compares the same way for the versions Cairn builds: runs of digits as
//! numbers, runs of letters as text, `~` before anything (a pre-release),
//! other separators only separate.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Tilde,
    Num(&'a str),
    Alpha(&'a str),
}

fn parts(v: &str) -> Vec<Part<'_>> {
    let b = v.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let start = i;
        if b[i] == b'~' {
            out.push(Part::Tilde);
            i += 1;
        } else if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Part::Num(v[start..i].trim_start_matches('0')));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Part::Alpha(&v[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

/// Compare two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let o = match (pa.get(i), pb.get(i)) {
            (Some(Part::Tilde), Some(Part::Tilde)) => Ordering::Equal,
            (Some(Part::Tilde), _) => Ordering::Less,
            (_, Some(Part::Tilde)) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(Part::Num(x)), Some(Part::Num(y))) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
            // A number is newer than letters in the same place (1.0 > 1.a).
            (Some(Part::Num(_)), Some(Part::Alpha(_))) => Ordering::Greater,
            (Some(Part::Alpha(_)), Some(Part::Num(_))) => Ordering::Less,
            (Some(Part::Alpha(x)), Some(Part::Alpha(y))) => x.cmp(y),
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_order_as_systemd_boot_orders_them() {
        for (a, b, o) in [
            ("0.1.0.202612041230", "0.1.0.202612041231", Less),
            ("0.1.0.9", "0.1.0.10", Less),
            ("2", "10", Less),
            ("1.0", "1.0", Equal),
            ("1.01", "1.1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0.1", Less),
            ("1.a", "1.0", Less),
            ("1.b", "1.a", Greater),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }
}
