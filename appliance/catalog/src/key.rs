//! Keys of the `snapshots_v1` table.
//!
//! A key orders exactly as `SnapshotId` does (namespace components, group
//! type, group id, then time), so a full scan is already sorted and one
//! group's snapshots are one contiguous range in time order. Components are
//! restricted ASCII names (every byte above 0x01), so two separator bytes
//! below them keep the order: 0x01 ends a namespace component, 0x00 ends the
//! namespace, the type and the id. The time follows as 16 hex digits of the
//! epoch seconds with the sign bit flipped, so negative times sort first.
//!
//! Invariant: keys are only for ordering and lookup; rows carry the id
//! parts themselves, so nothing ever parses a key back.

use model::{BackupGroup, SnapshotId};

/// The common prefix of every key of `group`'s snapshots.
pub(crate) fn group_prefix(group: &BackupGroup) -> String {
    let mut key = String::new();
    for component in group.ns.components() {
        key.push_str(component);
        key.push('\u{1}');
    }
    key.push('\0');
    key.push_str(&group.kind);
    key.push('\0');
    key.push_str(&group.id);
    key.push('\0');
    key
}

/// The key of one snapshot.
pub(crate) fn snapshot_key(id: &SnapshotId) -> String {
    let mut key = group_prefix(&id.group);
    let ordered = (id.time as u64) ^ (1 << 63);
    key.push_str(&format!("{ordered:016x}"));
    key
}

/// The half-open key range `[start, end)` holding exactly `group`'s snapshots.
pub(crate) fn group_range(group: &BackupGroup) -> (String, String) {
    let start = group_prefix(group);
    // the prefix ends in 0x00; the same prefix ending in 0x01 is the first
    // key past every time of this group
    let mut end = start.clone();
    end.pop();
    end.push('\u{1}');
    (start, end)
}

#[cfg(test)]
mod tests {
    use model::Namespace;

    use super::*;

    fn id(ns: &str, kind: &str, name: &str, time: i64) -> SnapshotId {
        BackupGroup::new(Namespace::parse(ns).unwrap(), kind, name).unwrap().at(time)
    }

    #[test]
    fn keys_order_as_snapshot_ids() {
        let mut ids = vec![
            id("", "host", "a", 5),
            id("", "host", "a", -5),
            id("", "host", "a", i64::MAX),
            id("", "host", "a-b", 0),
            id("", "host", "a.b", 0),
            id("", "host", "ab", 0),
            id("", "vm", "100", 0),
            id("", "ct", "100", 0),
            id("a", "host", "x", 0),
            id("a.b", "host", "x", 0),
            id("a/b", "host", "x", 0),
            id("a/b/c", "host", "x", 0),
            id("ab", "host", "x", 0),
            id("", "host-x", "a", 0),
            id("", "host", "a", i64::MIN),
        ];
        let mut by_key = ids.clone();
        ids.sort();
        by_key.sort_by_key(snapshot_key);
        assert_eq!(by_key, ids);
    }

    #[test]
    fn group_range_holds_exactly_the_group() {
        let all = [
            id("", "host", "a", i64::MIN),
            id("", "host", "a", i64::MAX),
            id("", "host", "a-b", 0),
            id("", "host", "ab", 0),
            id("a", "host", "a", 0),
        ];
        let group = all[0].group.clone();
        let (start, end) = group_range(&group);
        for snap in &all {
            let key = snapshot_key(snap);
            let inside = key >= start && key < end;
            assert_eq!(inside, snap.group == group, "{snap}");
        }
    }
}
