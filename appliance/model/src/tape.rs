//! Tape media: pools (rules for where snapshots go and how long they
//! stay), media sets (the cartridges one run of a pool fills, in order),
//! media (one cartridge each) and tape copies (which snapshot is on which
//! cartridges), with the pure rules that pick the next cartridge.
//!
//! Invariant: nothing here touches a drive or reads the clock; the engine
//! asks, these rules answer.

use crate::SnapshotId;

/// How a pool places a new job's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Append to the pool's current media set while it lasts.
    Continue,
    /// Every job starts a new media set (the last one closes).
    NewSet,
}

impl Allocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Allocation::Continue => "continue",
            Allocation::NewSet => "new-set",
        }
    }

    pub fn parse(s: &str) -> Option<Allocation> {
        match s {
            "continue" => Some(Allocation::Continue),
            "new-set" | "always" => Some(Allocation::NewSet),
            _ => None,
        }
    }
}

/// A media pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPool {
    /// `[A-Za-z0-9_-]`, 1 to 64 characters.
    pub name: String,
    pub allocation: Allocation,
    /// Seconds a closed media set is kept before its cartridges may be
    /// written again; `None`: forever.
    pub retention: Option<i64>,
    /// The pool takes only WORM cartridges (and never any other).
    pub worm: bool,
}

impl MediaPool {
    /// Check the name (used in volume labels and paths).
    pub fn check_name(name: &str) -> Result<(), String> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(format!("pool name {name:?}: 1 to 64 letters, digits, '-' or '_'"));
        }
        Ok(())
    }
}

/// Where a cartridge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumState {
    /// Seen in the library and found blank: ready to be labelled.
    Blank,
    /// Labelled into a media set, with room left.
    Writable,
    /// Labelled into a media set and full (or its set closed).
    Full,
    /// Its label or data could not be read or written; never chosen.
    Error,
    /// A cleaning cartridge: never written.
    Cleaning,
    /// It holds a volume Cairn's catalog does not know (another
    /// appliance's, or one whose catalog was lost): never written until
    /// scanned or erased by an operator.
    Foreign,
}

impl MediumState {
    pub fn as_str(self) -> &'static str {
        match self {
            MediumState::Blank => "blank",
            MediumState::Writable => "writable",
            MediumState::Full => "full",
            MediumState::Error => "error",
            MediumState::Cleaning => "cleaning",
            MediumState::Foreign => "foreign",
        }
    }

    pub fn parse(s: &str) -> Option<MediumState> {
        [
            MediumState::Blank,
            MediumState::Writable,
            MediumState::Full,
            MediumState::Error,
            MediumState::Cleaning,
            MediumState::Foreign,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// One cartridge, by barcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Medium {
    pub barcode: String,
    pub state: MediumState,
    /// Its media set and place in it (1 for the first), once labelled.
    pub set: Option<String>,
    pub seq: u32,
    pub worm: bool,
    /// Unix seconds it was labelled, and last written.
    pub labelled: Option<i64>,
    pub written: Option<i64>,
    /// Bytes of volume written to it.
    pub bytes: u64,
    /// Filemarks written so far: the file number the next session
    /// starts at (file 0 holds the label).
    pub files: u32,
    /// Why it is in `Error` or `Foreign`.
    pub reason: Option<String>,
}

impl Medium {
    /// A cartridge seen for the first time.
    pub fn new(barcode: &str) -> Medium {
        Medium {
            barcode: barcode.to_owned(),
            state: if is_cleaning(barcode) { MediumState::Cleaning } else { MediumState::Blank },
            set: None,
            seq: 0,
            worm: false,
            labelled: None,
            written: None,
            bytes: 0,
            files: 0,
            reason: None,
        }
    }
}

/// A cleaning cartridge, by the barcode convention every library uses.
pub fn is_cleaning(barcode: &str) -> bool {
    barcode.starts_with("CLN")
}

/// A media set: cartridges filled in order by one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSet {
    /// A UUID, written in each of its cartridges' media labels.
    pub id: String,
    pub pool: String,
    /// Unix seconds.
    pub created: i64,
    /// When it stopped taking snapshots; its retention counts from here.
    pub closed: Option<i64>,
    /// Its cartridges in order.
    pub media: Vec<String>,
    /// Sessions written so far (the next gets this plus one).
    pub sessions: u32,
}

impl MediaSet {
    /// Its cartridges may be written again at `now` (under `pool`'s
    /// retention). WORM cartridges never are, whatever this says.
    pub fn expired(&self, pool: &MediaPool, now: i64) -> bool {
        match (self.closed, pool.retention) {
            (Some(closed), Some(keep)) => now >= closed.saturating_add(keep),
            _ => false,
        }
    }
}

/// Where one piece of a session sits: a cartridge and the file (counted
/// in filemarks from its start) the piece starts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapePart {
    pub barcode: String,
    pub file: u32,
}

/// A snapshot written to tape: one session of a media set, on one or
/// more cartridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeCopy {
    pub snapshot: SnapshotId,
    pub set: String,
    pub pool: String,
    /// The session's number in its set.
    pub session: u32,
    /// Unix seconds.
    pub written: i64,
    pub parts: Vec<TapePart>,
    pub files: u64,
    pub bytes: u64,
    /// The snapshot's archives: (name, kind).
    pub archives: Vec<(String, String)>,
}

/// What a job should write to next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextMedium {
    /// Go on writing this cartridge of the set (append after its data).
    Append(String),
    /// Label this cartridge into the set (it is blank, or its set
    /// expired).
    Label(String),
}

/// The next cartridge for `set` of `pool`: its last cartridge while
/// writable, else a new one from `candidates` (the cartridges in the
/// library, with their catalog records; `None` for one never seen).
/// Prefers a cartridge whose set expired (oldest first), then a blank
/// one, then one never seen (to be checked blank when loaded). Never a
/// cleaning, error, foreign or full WORM cartridge, never a WORM one for
/// a pool that is not WORM nor the reverse. `exclude`: cartridges this
/// job already gave up on.
pub fn next_medium(
    pool: &MediaPool,
    set: &MediaSet,
    sets: &[MediaSet],
    candidates: &[(String, Option<Medium>)],
    exclude: &[String],
    now: i64,
) -> Option<NextMedium> {
    if let Some(last) = set.media.last()
        && !exclude.contains(last)
        && let Some((_, Some(m))) = candidates.iter().find(|(b, _)| b == last)
        && m.state == MediumState::Writable
    {
        return Some(NextMedium::Append(last.clone()));
    }
    let usable = |b: &str| !exclude.iter().any(|e| e == b) && !is_cleaning(b);
    let expired = |m: &Medium| {
        let s = m.set.as_ref().and_then(|id| sets.iter().find(|s| &s.id == id));
        !m.worm
            && !pool.worm
            && matches!(m.state, MediumState::Writable | MediumState::Full)
            && s.is_some_and(|s| s.pool == pool.name && s.id != set.id && s.expired(pool, now))
    };
    let mut recyclable: Vec<(&Medium, i64)> = candidates
        .iter()
        .filter_map(|(b, m)| m.as_ref().filter(|m| usable(b) && expired(m)))
        .map(|m| (m, m.written.unwrap_or(0)))
        .collect();
    recyclable.sort_by_key(|(m, t)| (*t, m.barcode.clone()));
    if let Some((m, _)) = recyclable.first() {
        return Some(NextMedium::Label(m.barcode.clone()));
    }
    let blank = candidates.iter().find(|(b, m)| {
        usable(b) && m.as_ref().is_some_and(|m| m.state == MediumState::Blank && m.worm == pool.worm)
    });
    if let Some((b, _)) = blank {
        return Some(NextMedium::Label(b.clone()));
    }
    // Never seen: whether it is WORM shows only once it is loaded.
    candidates.iter().find(|(b, m)| usable(b) && m.is_none()).map(|(b, _)| NextMedium::Label(b.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(retention: Option<i64>) -> MediaPool {
        MediaPool { name: "p".into(), allocation: Allocation::Continue, retention, worm: false }
    }

    fn set(id: &str, closed: Option<i64>, media: &[&str]) -> MediaSet {
        MediaSet {
            id: id.into(),
            pool: "p".into(),
            created: 0,
            closed,
            media: media.iter().map(|s| s.to_string()).collect(),
            sessions: 0,
        }
    }

    fn medium(
        b: &str,
        state: MediumState,
        set: Option<&str>,
        worm: bool,
        written: i64,
    ) -> (String, Option<Medium>) {
        let m = Medium { state, set: set.map(String::from), worm, written: Some(written), ..Medium::new(b) };
        (b.into(), Some(m))
    }

    #[test]
    fn a_set_goes_on_on_its_last_writable_cartridge() {
        let s = set("s", None, &["A1", "A2"]);
        let c = [
            medium("A1", MediumState::Full, Some("s"), false, 1),
            medium("A2", MediumState::Writable, Some("s"), false, 2),
            medium("B1", MediumState::Blank, None, false, 0),
        ];
        assert_eq!(
            next_medium(&pool(None), &s, std::slice::from_ref(&s), &c, &[], 10),
            Some(NextMedium::Append("A2".into()))
        );
        // Given up on (its label could not be read): a blank one instead.
        assert_eq!(
            next_medium(&pool(None), &s, std::slice::from_ref(&s), &c, &["A2".into()], 10),
            Some(NextMedium::Label("B1".into()))
        );
    }

    #[test]
    fn expired_sets_are_recycled_oldest_first_and_never_worm_or_cleaning() {
        let new = set("new", None, &[]);
        let old = set("old", Some(100), &["O1", "O2"]);
        let sets = [new.clone(), old.clone()];
        let c = [
            ("CLN001L1".to_string(), Some(Medium::new("CLN001L1"))),
            medium("O2", MediumState::Full, Some("old"), false, 50),
            medium("O1", MediumState::Full, Some("old"), false, 40),
            medium("B1", MediumState::Blank, None, false, 0),
        ];
        let p = pool(Some(1000));
        // Not yet expired: the blank one.
        assert_eq!(next_medium(&p, &new, &sets, &c, &[], 1099), Some(NextMedium::Label("B1".into())));
        // Expired: the oldest written first.
        assert_eq!(next_medium(&p, &new, &sets, &c, &[], 1100), Some(NextMedium::Label("O1".into())));
        // Kept forever: never.
        assert_eq!(
            next_medium(&pool(None), &new, &sets, &c, &[], i64::MAX),
            Some(NextMedium::Label("B1".into()))
        );
        // A WORM cartridge of an expired set is never written again.
        let c = [medium("O1", MediumState::Full, Some("old"), true, 40)];
        assert_eq!(next_medium(&p, &new, &sets, &c, &[], 1100), None);
        // Nor a cleaning cartridge, even one the catalog never saw.
        assert_eq!(next_medium(&p, &new, &sets, &[("CLN002L1".into(), None)], &[], 0), None);
    }

    #[test]
    fn error_foreign_and_other_pools_cartridges_are_never_chosen() {
        let s = set("s", None, &[]);
        let mut other = set("o", Some(0), &["X1"]);
        other.pool = "other".into();
        let c = [
            medium("E1", MediumState::Error, None, false, 0),
            medium("F1", MediumState::Foreign, None, false, 0),
            medium("X1", MediumState::Full, Some("o"), false, 0),
            medium("W1", MediumState::Blank, None, true, 0),
        ];
        assert_eq!(next_medium(&pool(Some(0)), &s, &[s.clone(), other.clone()], &c, &[], 100), None);
        let worm = MediaPool { worm: true, ..pool(None) };
        assert_eq!(
            next_medium(&worm, &s, &[s.clone(), other], &c, &[], 100),
            Some(NextMedium::Label("W1".into()))
        );
        assert_eq!(
            next_medium(&pool(None), &s, &[], &[("N1".into(), None)], &[], 0),
            Some(NextMedium::Label("N1".into()))
        );
    }
}
