//! Byte sizes as operators write them: `1048576`, `512K`, `50G`, `2TiB`
//! (binary multiples; `K`, `KB` and `KiB` all mean 1024).

/// Parse a size; an error says what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad =
        || format!("size {text:?}: expected a number of bytes with an optional unit K, M, G or T (e.g. 50G)");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {text:?} is too large"))
}

/// A limit: a size of at least one byte.
pub fn parse_limit(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!("size limit {text:?}: 0 allows nothing; leave the limit out for none")),
        n => Ok(n),
    }
}

/// A size in the largest unit that states it exactly (`50G`, `1536M`,
/// `1000`), which [`parse_size`] reads back.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_read_back() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("50g"), Ok(50 << 30));
        assert_eq!(parse_size(" 2 TiB "), Ok(2 << 40));
        assert_eq!(parse_size("3MB"), Ok(3 << 20));
        for bad in ["", "G", "1.5G", "-1", "10X", "1P"] {
            assert!(parse_size(bad).is_err(), "{bad:?} is refused");
        }
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
        for n in [0, 1, 1000, 1 << 10, 1536 << 20, 50 << 30, 3 << 40, (1 << 40) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n} -> {}", format_size(n));
        }
        assert_eq!(format_size(50 << 30), "50G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(parse_limit("1K"), Ok(1024));
        assert!(parse_limit("0G").unwrap_err().contains("allows nothing"));
    }
}
