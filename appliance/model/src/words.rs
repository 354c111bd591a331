//! Counts with their nouns, for messages people read (CLI output and task
//! logs say the same).

/// `1 chunk`, `3 chunks`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::count(1, "bad chunk"), "1 bad chunk");
        assert_eq!(super::count(0, "chunk"), "0 chunks");
        assert_eq!(super::count(3, "file"), "3 files");
    }
}
