//! What the server records about a stored policy component.

/// Largest policy component accepted: by the policy host, the server's
/// upload and a client fetching a source handler.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;

/// A stored policy: the name operators use and what the policy host found
/// in the component when it was added. The component's bytes are kept
/// apart, by `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// The name operators use (`--policy NAME`).
    pub name: String,
    /// `retention`, `scheduler` or `source`.
    pub world: String,
    /// The `cairn:policy` WIT version it was built against.
    pub wit_version: String,
    /// The policy's own name and version, from its `describe`.
    pub policy_name: String,
    pub policy_version: String,
    pub description: String,
    /// (parameter, help) pairs from its `describe`.
    pub params: Vec<(String, String)>,
    /// blake3 of the component, hex.
    pub digest: String,
    pub size: u64,
    /// When it was added, epoch seconds.
    pub added: i64,
    /// CPU budget per call, milliseconds.
    pub cpu_ms: u64,
    /// Memory cap per call, MiB.
    pub memory_mib: u64,
}

/// CPU budget per call of a policy added without one, milliseconds.
pub const DEFAULT_CPU_MS: u64 = 1_000;

/// Memory cap per call of a policy added without one, MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// Whether `name` may name a stored policy: 1 to 64 letters, digits, `-`,
/// `_` or `.`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
}

/// What is wrong with a name `valid_name` refuses.
pub const NAME_RULE: &str =
    "a policy name is 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'";

/// Whether `digest` is a blake3 digest as records hold it: 64 lower-case
/// hex digits.
pub fn valid_digest(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Policy parameters as operators type them, `KEY=VALUE` each (the value
/// may hold `=`; the key may not be empty).
pub fn parse_params<S: AsRef<str>>(
    raw: impl IntoIterator<Item = S>,
) -> Result<Vec<(String, String)>, String> {
    raw.into_iter()
        .map(|p| {
            let p = p.as_ref();
            let (k, v) = p.split_once('=').ok_or_else(|| format!("parameter {p:?}: expected KEY=VALUE"))?;
            if k.is_empty() {
                return Err(format!("parameter {p:?}: the key is empty"));
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Each value as an index into the distinct values, listed in the order
/// they first appear: how `cairn:policy@0.2.0` passes tag lists to a
/// retention policy and reasons back from it. Neighbours often share a
/// value (`remove`, the same tags), so only a change is looked up.
pub fn intern<T: Eq + std::hash::Hash + Clone>(values: impl IntoIterator<Item = T>) -> (Vec<u32>, Vec<T>) {
    let mut distinct: Vec<T> = Vec::new();
    let mut index: std::collections::HashMap<T, u32> = std::collections::HashMap::new();
    let mut last: Option<u32> = None;
    let indices = values
        .into_iter()
        .map(|v| {
            let i = match last {
                Some(i) if distinct[i as usize] == v => i,
                _ => *index.entry(v).or_insert_with_key(|v| {
                    distinct.push(v.clone());
                    (distinct.len() - 1) as u32
                }),
            };
            last = Some(i);
            i
        })
        .collect();
    (indices, distinct)
}

/// Retention decisions as `cairn:policy@0.2.0` answers them: each
/// `(keep, reason)` becomes `(keep, index)` into the distinct reasons
/// ([`intern`]).
pub fn intern_reasons(
    decisions: impl IntoIterator<Item = (bool, String)>,
) -> (Vec<(bool, u32)>, Vec<String>) {
    let (keep, reasons): (Vec<bool>, Vec<String>) = decisions.into_iter().unzip();
    let (indices, reasons) = intern(reasons);
    (keep.into_iter().zip(indices).collect(), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_once_in_the_order_they_first_appear() {
        let given = [
            (true, "keep-last 1"),
            (false, "remove"),
            (false, "remove"),
            (true, "keep-daily 2"),
            (false, "remove"),
        ];
        let (verdicts, reasons) = intern_reasons(given.iter().map(|(k, r)| (*k, r.to_string())));
        assert_eq!(reasons, ["keep-last 1", "remove", "keep-daily 2"]);
        assert_eq!(verdicts, [(true, 0), (false, 1), (false, 1), (true, 2), (false, 1)]);
        let back: Vec<(bool, &str)> =
            verdicts.iter().map(|&(k, i)| (k, reasons[i as usize].as_str())).collect();
        assert_eq!(back, given);
        assert_eq!(intern_reasons(std::iter::empty()), (vec![], vec![]));
    }

    #[test]
    fn names_and_digests() {
        assert!(valid_name("gfs") && valid_name("retention-gfs_2.1"));
        for bad in ["", ".hidden", "a/b", "../x", "sp ace", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_digest(&"0a".repeat(32)));
        assert!(!valid_digest(&"0A".repeat(32)) && !valid_digest("00") && !valid_digest(&"g".repeat(64)));
    }
}
