//! Components built against `cairn:policy@0.1.0` keep running beside those
//! of 0.2.0: a scheduler and a source handler of 0.1.0, through the same
//! host calls (`legacy-retention` is in `retention.rs`).

use policy::{Grants, Host, JobRun, Limits, ScheduleJob, SourceItem, SourceStep, World};

fn load(host: &Host, guest: &str) -> policy::Policy {
    let bytes = std::fs::read(policy_guests::test_guest(guest)).expect("guest");
    host.load(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("load {guest}: {e}"))
}

#[test]
fn a_0_1_0_scheduler_decides() {
    let host = Host::new().expect("host");
    let p = load(&host, "legacy-scheduler");
    assert_eq!(
        (p.world, p.wit_version(), p.info.name.as_str()),
        (World::Scheduler, "0.1.0", "legacy-scheduler")
    );
    let job = ScheduleJob { name: "nightly".into(), group: "host/web".into(), params: vec![] };
    let now = 1_764_000_000;
    let d = host.schedule(&p, &job, &[], now, &Limits::default()).expect("first run");
    assert!(d.run_now && d.tags == ["hourly"] && d.next_check == now + 3_600, "{d:?}");
    assert_eq!(d.reason, "nightly of host/web: last run None");
    let runs = [JobRun { time: now - 60, outcome: "ok".into(), tags: vec![], duration_seconds: 5 }];
    let d = host.schedule(&p, &job, &runs, now, &Limits::default()).expect("ran a minute ago");
    assert!(!d.run_now && d.tags.is_empty(), "{d:?}");
    assert_eq!(d.reason, format!("nightly of host/web: last run Some({})", now - 60));
}

#[test]
fn a_0_1_0_source_handler_backs_up_and_restores() {
    let host = Host::new().expect("host");
    let p = load(&host, "legacy-source");
    assert_eq!((p.world, p.wit_version()), (World::Source, "0.1.0"));
    let params = vec![("text".to_owned(), "hello from 0.1.0".to_owned())];
    let mut s = host.source(&p, &Grants::default(), None).expect("open");
    assert!(s.features.full && s.features.restore && !s.features.incremental);
    s.begin_backup(&params, None).expect("begin");
    let item = SourceItem {
        path: "greeting.txt".into(),
        kind: policy::ItemKind::File,
        mode: 0o644,
        mtime: 1_764_000_000,
        target: String::new(),
        size: Some(16),
    };
    assert_eq!(s.next_step().expect("item"), SourceStep::Item(item.clone()));
    assert_eq!(s.next_step().expect("data"), SourceStep::Data(b"hello from 0.1.0".to_vec()));
    assert_eq!(s.next_step().expect("end"), SourceStep::End);

    let mut r = host.source(&p, &Grants::default(), None).expect("open");
    r.begin_restore(&params).expect("begin restore");
    r.restore_item(&item).expect("item");
    r.restore_data(b"hello from 0.1.0").expect("data");
    r.finish_restore().expect("the handler got back what it gave");

    // And the handler's own check fails when it gets something else.
    let mut r = host.source(&p, &Grants::default(), None).expect("open");
    r.begin_restore(&params).expect("begin restore");
    r.restore_item(&SourceItem { mode: 0o600, ..item }).expect("item");
    r.restore_data(b"hello").expect("data");
    let err = r.finish_restore().expect_err("not what it gave").to_string();
    assert!(err.contains("legacy-source 0.1.0") && err.contains("greeting.txt 600"), "{err}");
}
