//! The source host against the `source-http` example built from source and
//! a local HTTP server: a backup's steps, a restore by upload, and what the
//! handler may not reach.

use policy::{Grants, Host, Limits, SourceItem, SourceStep, World};
use testkit::http::ExportServer;

fn export(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect()
}

fn load(host: &Host) -> policy::Policy {
    let path = policy_guests::example("source-http");
    let bytes = std::fs::read(&path).unwrap();
    host.load(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

fn params(kv: &[(&str, String)]) -> Vec<(String, String)> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn grants(server: &ExportServer) -> Grants {
    Grants { dir: None, hosts: vec![server.authority()] }
}

#[test]
fn backup_yields_the_export_and_restore_uploads_it_back() {
    let data = export(2_500_000);
    let server = ExportServer::start("/db.dump", data.clone());
    let host = Host::new().unwrap();
    let policy = load(&host);
    assert_eq!(policy.world, World::Source);
    assert_eq!(policy.info.name, "source-http");
    assert!(policy.info.params.iter().any(|(k, _)| k == "url"));

    let url = format!("http://{}/db.dump", server.authority());
    let mut s = host.source(&policy, &grants(&server), None).unwrap();
    assert!(s.features.full && s.features.restore && !s.features.incremental);
    s.begin_backup(&params(&[("url", url.clone()), ("authorization", "Bearer t0ken".into())]), None).unwrap();
    let first = s.next_step().unwrap();
    let SourceStep::Item(item) = first else { panic!("first step {first:?} is not an item") };
    assert_eq!(item.path, "db.dump");
    assert_eq!(item.size, Some(data.len() as u64));
    let mut got = Vec::new();
    let mut pieces = Vec::new();
    loop {
        match s.next_step().unwrap() {
            SourceStep::Data(d) => {
                pieces.push(d.len());
                got.extend_from_slice(&d);
            }
            SourceStep::End => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data, "the data steps carry the export byte for byte");
    assert!(pieces.iter().all(|n| *n <= 1 << 20), "pieces of at most 1 MiB: {pieces:?}");
    assert!(
        pieces[..pieces.len() - 1].iter().all(|n| *n >= 256 << 10),
        "pieces of 256 KiB or more: {pieces:?}"
    );
    let get = &server.requests()[0];
    assert_eq!((get.method.as_str(), get.header("authorization")), ("GET", Some("Bearer t0ken")));

    let mut r = host.source(&policy, &grants(&server), None).unwrap();
    r.begin_restore(&params(&[("url", url)])).unwrap();
    r.restore_item(&SourceItem { size: None, ..item }).unwrap();
    for piece in data.chunks(700_000) {
        r.restore_data(piece).unwrap();
    }
    r.finish_restore().unwrap();
    let put = server.requests().into_iter().find(|q| q.method == "PUT").expect("an upload");
    assert_eq!(put.path, "/db.dump");
    assert!(put.body == data, "the upload is the export, byte for byte ({} bytes)", put.body.len());
}

#[test]
fn the_handler_reaches_only_granted_hosts() {
    let server = ExportServer::start("/db.dump", export(1000));
    let other = ExportServer::start("/db.dump", export(1000));
    let host = Host::new().unwrap();
    let policy = load(&host);
    let url = format!("http://{}/db.dump", server.authority());
    for g in [Grants::default(), grants(&other)] {
        let mut s = host.source(&policy, &g, None).unwrap();
        let err = s.begin_backup(&params(&[("url", url.clone())]), None).unwrap_err().to_string();
        assert!(err.contains("source-http") && err.contains("does not allow this host"), "{err}");
    }
    assert!(server.requests().is_empty(), "no request reached the server");
}

#[test]
fn bad_parameters_and_answers_are_clear_errors() {
    let server = ExportServer::start("/db.dump", export(10));
    let host = Host::new().unwrap();
    let policy = load(&host);
    let cases = [
        (vec![], "url parameter is required"),
        (vec![("url", "ftp://x/y".to_owned())], "not an http"),
        (
            vec![("url", format!("http://{}/db.dump", server.authority())), ("colour", "red".into())],
            "unknown parameter",
        ),
        (vec![("url", format!("http://{}/missing", server.authority()))], "answered 404"),
    ];
    for (p, expect) in cases {
        let mut s = host.source(&policy, &grants(&server), None).unwrap();
        let err = s.begin_backup(&params(&p), None).unwrap_err().to_string();
        assert!(err.contains(expect), "{p:?}: {err} should say {expect:?}");
    }
    // A retention call on a source policy is refused by world.
    let err = host.retention(&policy, "host/h", &[], 0, &[], &Limits::default()).unwrap_err().to_string();
    assert!(err.contains("not a retention policy"), "{err}");
}

/// A case of `policies/source-http/cases/`.
#[derive(serde::Deserialize)]
struct Case {
    serve: String,
    export_bytes: usize,
    params: std::collections::BTreeMap<String, String>,
    expect: Option<Expect>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Expect {
    path: String,
    size: u64,
}

#[test]
fn source_http_cases() {
    let host = Host::new().unwrap();
    let policy = load(&host);
    let dir = policy_guests::policies_dir().join("source-http/cases");
    let mut ran = 0;
    for file in std::fs::read_dir(&dir).unwrap() {
        let path = file.unwrap().path();
        let case: Case = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let data = export(case.export_bytes);
        let server = ExportServer::start(&case.serve, data.clone());
        let p: Vec<(String, String)> = case
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{server}", &server.authority())))
            .collect();
        let mut s = host.source(&policy, &grants(&server), None).unwrap();
        let name = path.display();
        let begun = s.begin_backup(&p, None);
        match (&case.expect, &case.error) {
            (Some(want), None) => {
                begun.unwrap_or_else(|e| panic!("{name}: {e}"));
                let SourceStep::Item(item) = s.next_step().unwrap() else { panic!("{name}: no item first") };
                assert_eq!((item.path.as_str(), item.size), (want.path.as_str(), Some(want.size)), "{name}");
                let mut got = Vec::new();
                while let SourceStep::Data(d) = s.next_step().unwrap() {
                    got.extend_from_slice(&d);
                }
                assert!(got == data, "{name}: the data is the export");
            }
            (None, Some(error)) => {
                let err = begun.err().unwrap_or_else(|| panic!("{name}: should fail")).to_string();
                assert!(err.contains(error.as_str()), "{name}: {err} should say {error:?}");
            }
            _ => panic!("{name}: a case has either expect or error"),
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} cases in {}", dir.display());
}

fn thread_cpu() -> std::time::Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    std::time::Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn mode(mode: &str, file: &str) -> Vec<(String, String)> {
    vec![("mode".into(), mode.into()), ("file".into(), file.into())]
}

/// A handler sees a granted directory read-only as `/source` and nothing
/// else of the filesystem; it cannot climb out of it or write to it.
#[test]
fn a_source_handler_reads_only_its_granted_directory() {
    let base = std::env::temp_dir().join(format!("cairn-grant-{}", std::process::id()));
    let granted = base.join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::write(granted.join("secret.txt"), b"granted contents").unwrap();
    std::fs::write(base.join("outside.txt"), b"not granted").unwrap();
    let host = Host::new().unwrap();
    let bytes = std::fs::read(policy_guests::test_guest("hostile-source")).unwrap();
    let hostile = host.load(&bytes, &Limits::default()).unwrap();
    let grant = Grants { dir: Some(granted.clone()), hosts: vec![] };

    let mut s = host.source(&hostile, &grant, None).unwrap();
    s.begin_backup(&mode("read", "/source/secret.txt"), None).unwrap();
    assert!(matches!(s.next_step().unwrap(), SourceStep::Item(i) if i.path == "copy"));
    assert_eq!(s.next_step().unwrap(), SourceStep::Data(b"granted contents".to_vec()));

    for (g, file) in [
        (&grant, "/source/../outside.txt"),
        (&grant, base.join("outside.txt").to_str().unwrap()),
        (&Grants::default(), "/source/secret.txt"),
        (&Grants::default(), "/etc/hostname"),
    ] {
        let mut s = host.source(&hostile, g, None).unwrap();
        s.begin_backup(&mode("read", file), None).unwrap();
        s.next_step().unwrap();
        let err = s.next_step().expect_err(file).to_string();
        assert!(err.contains("hostile-source") && err.contains(&format!("read {file}")), "{err}");
    }
    let mut s = host.source(&hostile, &grant, None).unwrap();
    let err = s.begin_backup(&mode("write", "/source/new.txt"), None).unwrap_err().to_string();
    assert!(err.contains("write /source/new.txt"), "{err}");
    assert!(!granted.join("new.txt").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// Each misbehaviour is stopped within its budget (plus 50 ms of CPU) with
/// an error naming the handler; a trapped session refuses further calls.
#[test]
fn hostile_source_handlers_are_stopped() {
    use std::time::{Duration, Instant};
    let host = Host::new().unwrap();
    let bytes = std::fs::read(policy_guests::test_guest("hostile-source")).unwrap();
    let hostile = host.load(&bytes, &Limits::default()).unwrap();
    let limits = Limits { cpu: Duration::from_millis(300), memory: 32 << 20 };
    // Warm up: the first call pays one-off costs.
    let mut s = host.source(&hostile, &Grants::default(), Some(&limits)).unwrap();
    s.begin_backup(&mode("none", ""), None).unwrap();

    let mut s = host.source(&hostile, &Grants::default(), Some(&limits)).unwrap();
    s.begin_backup(&mode("loop", ""), None).unwrap();
    let (started, cpu_before) = (Instant::now(), thread_cpu());
    let err = s.next_step().unwrap_err().to_string();
    let (took, cpu) = (started.elapsed(), thread_cpu() - cpu_before);
    assert!(err.contains("hostile-source 0.1.0") && err.contains("CPU budget"), "{err}");
    assert!(cpu < limits.cpu + Duration::from_millis(50), "stopped after {cpu:?} of CPU (took {took:?})");
    let again = s.next_step().unwrap_err().to_string();
    assert!(again.contains("failed earlier"), "{again}");

    let mut s = host.source(&hostile, &Grants::default(), Some(&limits)).unwrap();
    let err = s.begin_backup(&mode("memory", ""), None).unwrap_err().to_string();
    assert!(err.contains("memory limit of 32 MiB"), "{err}");

    let mut s = host.source(&hostile, &Grants::default(), Some(&limits)).unwrap();
    s.begin_backup(&mode("huge-step", ""), None).unwrap();
    s.next_step().unwrap();
    let err = s.next_step().unwrap_err().to_string();
    assert!(err.contains("8388608 bytes of data in one step"), "{err}");

    // A handler that cannot restore says so before it is called.
    let mut s = host.source(&hostile, &Grants::default(), None).unwrap();
    let err = s.begin_restore(&[]).unwrap_err().to_string();
    assert!(err.contains("cannot restore"), "{err}");
}

/// A FIFO, a socket or a device in the granted directory cannot be opened:
/// the guest's read fails with an error it sees, instead of blocking the
/// host in `open` (where no CPU budget can stop it) until someone writes.
/// (The channel's timeout only keeps a regression from hanging the test
/// run: it writes to the FIFO to free the blocked open, then fails.)
#[test]
fn special_files_in_the_granted_directory_are_refused() {
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let granted = dir.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    let fifo = granted.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let _socket = UnixListener::bind(granted.join("socket")).unwrap();
    std::os::unix::fs::symlink("fifo", granted.join("to-fifo")).unwrap();
    // A device node like /dev/null, where this user may make one (root).
    let mut special = vec!["fifo", "to-fifo", "socket"];
    let null = nix::sys::stat::makedev(1, 3);
    let chr = nix::sys::stat::SFlag::S_IFCHR;
    if nix::sys::stat::mknod(&granted.join("device"), chr, nix::sys::stat::Mode::S_IRUSR, null).is_ok() {
        special.push("device");
    }
    std::fs::write(granted.join("plain"), b"plain file").unwrap();
    let bytes = std::fs::read(policy_guests::test_guest("hostile-source")).unwrap();
    let grant = Grants { dir: Some(granted.clone()), hosts: vec![] };

    let (tx, rx) = mpsc::channel();
    let read = move |file: &str| {
        let host = Host::new().unwrap();
        let hostile = host.load(&bytes, &Limits::default()).unwrap();
        let mut s = host.source(&hostile, &grant, None).unwrap();
        s.begin_backup(&mode("read", file), None).unwrap();
        s.next_step().unwrap();
        s.next_step().map_err(|e| e.to_string())
    };
    let files: Vec<&str> = special.iter().copied().chain(["plain"]).collect();
    std::thread::spawn(move || {
        for file in files {
            let _ = tx.send((file, read(&format!("/source/{file}"))));
        }
    });
    for want in special {
        let Ok((file, got)) = rx.recv_timeout(std::time::Duration::from_secs(120)) else {
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("opening /source/{want} blocked");
        };
        let err = got.expect_err(file);
        assert!(err.contains(&format!("read /source/{file}")) && err.contains("ermission denied"), "{err}");
    }
    let (_, plain) = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("plain");
    assert_eq!(plain.expect("a regular file still reads"), SourceStep::Data(b"plain file".to_vec()));
}

/// Source handlers get the operating system's randomness (two sessions
/// see different bytes); retention and scheduler policies keep their
/// fixed seed.
#[test]
fn source_handlers_get_real_randomness() {
    let host = Host::new().unwrap();
    let bytes = std::fs::read(policy_guests::test_guest("hostile-source")).unwrap();
    let hostile = host.load(&bytes, &Limits::default()).unwrap();
    let random = || {
        let mut s = host.source(&hostile, &Grants::default(), None).unwrap();
        s.begin_backup(&mode("random", ""), None).unwrap();
        s.next_step().unwrap();
        match s.next_step().unwrap() {
            SourceStep::Data(d) => d,
            other => panic!("{other:?}"),
        }
    };
    let (a, b) = (random(), random());
    assert_eq!(a.len(), 24);
    assert_ne!(a[..16], b[..16], "wasi:random/random gives each session its own bytes");
    assert_ne!(a[16..], b[16..], "so does wasi:random/insecure-seed");
}

/// A host granted by name is refused when its name resolves to a loopback
/// (or link-local, private…) address: `localhost:PORT` does not reach the
/// server that `127.0.0.1:PORT`, an address granted as such, does.
#[test]
fn a_host_granted_by_name_that_resolves_to_loopback_is_refused() {
    let server = ExportServer::start("/db.dump", export(1000));
    let port = server.authority().rsplit(':').next().unwrap().to_owned();
    let host = Host::new().unwrap();
    let policy = load(&host);
    let by_name = format!("localhost:{port}");
    let g = Grants { dir: None, hosts: vec![by_name.clone()] };
    let mut s = host.source(&policy, &g, None).unwrap();
    let url = format!("http://{by_name}/db.dump");
    let err = s.begin_backup(&params(&[("url", url)]), None).unwrap_err().to_string();
    assert!(err.contains("DestinationIpProhibited"), "{err}");
    assert!(server.requests().is_empty(), "no request reached the server");

    let mut s = host.source(&policy, &grants(&server), None).unwrap();
    s.begin_backup(&params(&[("url", format!("http://{}/db.dump", server.authority()))]), None).unwrap();
    assert_eq!(server.requests().len(), 1);
}
