//! Writes the golden catalog `tests/data/golden-catalog-v1/catalog.redb`:
//! one record of every kind the catalog keeps, a job with every optional
//! field among them. `records()` is also what the catalog's golden test
//! expects every later build to read back from that file.
//!
//! Run only when the fixture is lost, with the build of the format it
//! stands for: `cargo run -p catalog --example golden_catalog -- FILE`.

use model::backy::TagInterval;
use model::prune::KeepRules;
use model::{
    ApiToken, ArchiveKind, ArchiveSummary, BackupGroup, Job, JobSource, Namespace, PolicyUse, Role, Session,
    SnapshotInfo, Task, TaskState, User, VerifyState,
};

/// Everything the golden catalog holds.
pub struct Records {
    pub user: User,
    pub token: ApiToken,
    /// Keyed by the blake3 hex of the session secret.
    pub session: (String, Session),
    /// Only the fields of the first rows.
    pub plain_job: Job,
    /// Every optional field set.
    pub full_job: Job,
    pub task: Task,
    pub snapshot: SnapshotInfo,
}

fn group(ns: &str, kind: &str, id: &str) -> BackupGroup {
    BackupGroup::new(Namespace::parse(ns).expect("namespace"), kind, id).expect("group")
}

pub fn records() -> Records {
    let t = 1_767_323_045; // 2026-01-02T03:04:05Z
    let plain_job = Job {
        name: "web01-etc".into(),
        group: group("", "host", "web01"),
        sources: vec!["/etc".into(), "/srv/www".into()],
        schedule: "0 3 * * *".into(),
        tags: vec!["nightly".into()],
        keep: KeepRules { last: 3, hourly: 0, daily: 7, weekly: 4, monthly: 6, yearly: 1 },
        verify: true,
        created: t,
        intervals: vec![],
        scheduler: None,
        retention: None,
        source: None,
    };
    let full_job = Job {
        name: "db.dump".into(),
        group: group("lab", "vm", "101"),
        sources: vec![],
        schedule: String::new(),
        tags: vec![],
        keep: KeepRules::default(),
        verify: false,
        created: t + 1,
        intervals: vec![
            TagInterval { tag: "daily".into(), seconds: 86_400, keep: 9 },
            TagInterval { tag: "weekly".into(), seconds: 7 * 86_400, keep: 5 },
        ],
        scheduler: Some(PolicyUse { name: "quiet-hours".into(), params: vec![("from".into(), "22".into())] }),
        retention: Some(PolicyUse { name: "gfs".into(), params: vec![] }),
        source: Some(JobSource {
            handler: "pg-dump".into(),
            params: vec![("db".into(), "shop".into())],
            allow_hosts: vec!["db.lab:5432".into()],
            grant_dir: Some("/var/backups/pg".into()),
            max_bytes: Some(1 << 30),
        }),
    };
    Records {
        user: User {
            name: "admin".into(),
            role: Role::Admin,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA".into(),
            created: t,
        },
        token: ApiToken {
            id: "golden01".into(),
            name: "web01 nightly".into(),
            owner: "admin".into(),
            role: Role::BackupClient,
            groups: vec![group("", "host", "web01"), group("lab", "vm", "101")],
            secret_hash: "ab".repeat(32),
            created: t,
            expires: Some(t + 86_400 * 365),
        },
        session: (
            "cd".repeat(32),
            Session { user: "admin".into(), csrf: "ef".repeat(16), created: t, expires: t + 3600 },
        ),
        plain_job,
        full_job,
        task: Task {
            id: 1,
            kind: "backup".into(),
            job: Some("web01-etc".into()),
            trigger: "schedule".into(),
            state: TaskState::Warning,
            started: t + 60,
            finished: Some(t + 120),
            snapshot: Some("host/web01/2026-01-02T03:05:05Z".into()),
            log: vec!["2026-01-02T03:05:05Z backup of /etc".into(), "skipped /etc/shadow: denied".into()],
        },
        snapshot: SnapshotInfo {
            id: group("lab", "vm", "101").at(t),
            tags: vec!["daily".into(), "weekly".into()],
            size: 10 << 30,
            stored: 123_456_789,
            duration_ms: 61_000,
            files: 42_000,
            errors: 3,
            protected: true,
            notes: "before the upgrade\nsecond line \u{e9}".into(),
            verify: VerifyState::Ok,
            verify_time: Some(t + 7200),
            archives: vec![
                ArchiveSummary { name: "root".into(), kind: ArchiveKind::File, size: 9 << 30 },
                ArchiveSummary { name: "disk0".into(), kind: ArchiveKind::Image, size: 1 << 30 },
            ],
        },
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: golden_catalog FILE (which must not exist)");
    assert!(!std::path::Path::new(&path).exists(), "{path} exists; move it aside first");
    let r = records();
    let catalog = catalog::Catalog::open(path.as_ref()).expect("create the catalog");
    catalog.put_user(&r.user).expect("user");
    catalog.put_token(&r.token).expect("token");
    catalog.put_session(&r.session.0, &r.session.1).expect("session");
    catalog.put_job(&r.plain_job).expect("plain job");
    catalog.put_job(&r.full_job).expect("full job");
    let id = catalog.start_task(&r.task).expect("task");
    assert_eq!(id, r.task.id);
    catalog.upsert_snapshot(&r.snapshot).expect("snapshot");
    drop(catalog);
    // Compacted, to keep the fixture small.
    let mut db = redb::Database::open(&path).expect("reopen");
    while db.compact().expect("compact") {}
    println!("wrote {path}");
}
