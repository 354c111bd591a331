//! Policy host figures for docs/benchmarks.md, for the `retention-gfs`
//! component: upload to ready (validate, compile in a child process as the
//! daemon does, seal, store the artifact), the same with compiling in this
//! process, a cached load (read the artifact, verify, deserialize,
//! describe), instantiation alone, and retention decisions over growing
//! snapshot sets (each call instantiates the component afresh).
//!
//!     cargo run --release -p policy --example policy_bench
//!
//! The example is its own compiler child: run as `policy_bench
//! __compile-policy` it does what `cairn __compile-policy` does.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use policy::{CompileIn, Host, Limits, Origin, RetentionSnapshot, VerifyState};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

/// What `write_atomic` in filevol does: temp file, fsync, rename, fsync
/// of the directory.
fn store(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
    fs::rename(&tmp, dir.join(name)).expect("rename");
    File::open(dir).and_then(|d| d.sync_all()).expect("fsync dir");
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("__compile-policy") {
        return policy::compile_child();
    }
    let program = std::env::current_exe().expect("this binary");
    let dir = std::env::temp_dir().join(format!("cairn-policy-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("bench dir");
    // A cache key, as the daemon has one: without it no artifact is sealed.
    let key = policy::CacheKey::load_or_create(&dir.join("cache.key")).expect("cache key");
    let child = Host::with_compiler(CompileIn::Process { program, args: vec!["__compile-policy".into()] })
        .expect("host")
        .with_cache_key(key);
    let host = Host::new().expect("host");
    // `POLICY_BENCH_COMPONENT=FILE`: measure another build of the
    // retention component (another allocator, another opt-level).
    let path = std::env::var_os("POLICY_BENCH_COMPONENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| policy_guests::example("retention-gfs"));
    let bytes = fs::read(&path).expect("component");
    let limits = Limits { cpu: Duration::from_secs(10), memory: 512 << 20 };
    let name = format!("{}.{}.cwasm", blake3::hash(&bytes).to_hex(), child.artifact_tag());

    // `POLICY_BENCH_PROFILE=N`: one compile of each kind, then N decisions
    // over 10,000 snapshots and the memory search, nothing else: for a
    // profiler to see the decision without the compiles, or to compare
    // builds in quick turns.
    let profile = std::env::var("POLICY_BENCH_PROFILE").ok().and_then(|v| v.parse::<usize>().ok());
    let rounds = |full: usize| if profile.is_some() { 1 } else { full };
    let upload = time(rounds(9), || {
        let ready = child.load_with_cache(&bytes, None, &limits).expect("load");
        store(&dir, &name, ready.artifact.as_deref().expect("artifact"));
    });
    let artifact = fs::read(dir.join(&name)).expect("artifact");
    println!(
        "| upload to ready: validate, compile in a child process, describe, seal and store the artifact \
         ({} KiB component, {} KiB artifact) | {:.1} ms |",
        bytes.len() >> 10,
        artifact.len() >> 10,
        ms(upload)
    );
    let in_process = time(rounds(5), || host.load(&bytes, &limits).expect("load"));
    println!("| the same compile + describe in this process, for comparison | {:.1} ms |", ms(in_process));
    let cached = time(rounds(25), || {
        let artifact = fs::read(dir.join(&name)).expect("artifact");
        let ready = child.load_with_cache(&bytes, Some(&artifact), &limits).expect("cached load");
        assert_eq!(ready.origin, Origin::Cached);
        ready
    });
    println!("| cached load: read the artifact, verify, deserialize, describe | {:.2} ms |", ms(cached));
    let policy = child.load_with_cache(&bytes, Some(&artifact), &limits).expect("cached load").policy;
    let instantiate = time(25, || child.instantiate(&policy, &limits).expect("instantiate"));
    println!("| instantiate (fresh store, no call) | {:.3} ms |", ms(instantiate));
    let _ = fs::remove_dir_all(&dir);

    let params: Vec<(String, String)> =
        [("keep-daily", "7"), ("keep-weekly", "4"), ("keep-monthly", "6"), ("keep-yearly", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let sizes: &[usize] = if profile.is_some() { &[10_000] } else { &[0, 10, 1_000, 10_000, 100_000] };
    for &n in sizes {
        let start = 1_700_000_000i64;
        let daily = ["daily".to_owned()];
        let snaps = hourly(start, n, &daily);
        let runs = profile.unwrap_or(if n >= 100_000 { 3 } else { 9 });
        let took = time(runs, || {
            let d = child.retention(&policy, "host/bench", &snaps, start, &params, &limits).expect("decide");
            assert_eq!(d.len(), n);
        });
        let what = if n == 0 {
            "instantiate + empty decision".to_owned()
        } else {
            format!("decision over {n} snapshots")
        };
        println!("| {what} | {:.2} ms |", ms(took));
        if n >= 10_000 {
            let fits = least_memory(|memory| {
                child
                    .retention(&policy, "host/bench", &snaps, start, &params, &Limits { memory, ..limits })
                    .is_ok()
            });
            println!("| least memory budget for {n} snapshots (to 64 KiB) | {} KiB |", fits >> 10);
        }
    }
    if profile.is_some() {
        return ExitCode::SUCCESS;
    }
    python(&child, &dir, &limits);
    source_throughput(&host);
    ExitCode::SUCCESS
}

/// The Python example `retention-recent`: upload to ready, cached load,
/// and decisions (keep-within 7d, keep-last 3).
fn python(child: &Host, dir: &Path, limits: &Limits) {
    fs::create_dir_all(dir).expect("bench dir");
    // `POLICY_BENCH_PYTHON_COMPONENT=FILE`: another build of it (one made
    // against an older contract, say).
    let path = std::env::var_os("POLICY_BENCH_PYTHON_COMPONENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| policy_guests::python_example("retention-recent"));
    let bytes = fs::read(&path).expect("component");
    let name = format!("{}.{}.cwasm", blake3::hash(&bytes).to_hex(), child.artifact_tag());
    let upload = time(1, || {
        let ready = child.load_with_cache(&bytes, None, limits).expect("load");
        store(dir, &name, ready.artifact.as_deref().expect("artifact"));
    });
    let artifact = fs::read(dir.join(&name)).expect("artifact");
    println!(
        "| Python: upload to ready ({} KiB component, {} KiB artifact) | {:.0} ms |",
        bytes.len() >> 10,
        artifact.len() >> 10,
        ms(upload)
    );
    let cached = time(9, || child.load_with_cache(&bytes, Some(&artifact), limits).expect("cached load"));
    println!("| Python: cached load | {:.1} ms |", ms(cached));
    let policy = child.load_with_cache(&bytes, Some(&artifact), limits).expect("cached").policy;
    let params = vec![("keep-within".to_owned(), "7d".to_owned()), ("keep-last".to_owned(), "3".to_owned())];
    for n in [10usize, 1_000, 10_000] {
        let start = 1_700_000_000i64;
        let snaps = hourly(start, n, &[]);
        let now = start + n as i64 * 3_600;
        let took =
            time(5, || child.retention(&policy, "host/bench", &snaps, now, &params, limits).expect("decide"));
        println!("| Python: instantiate + decision over {n} snapshots | {:.1} ms |", ms(took));
    }
    let _ = fs::remove_dir_all(dir);
}

/// `source-http` against a loopback server: bytes per second from the
/// server through the guest into the host (data steps only; the engine's
/// chunking, hashing and compression come after this in a real backup).
fn source_throughput(host: &Host) {
    let size = 512usize << 20;
    let data: Vec<u8> = (0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect();
    let server = testkit::http::ExportServer::start("/export", data);
    let bytes = fs::read(policy_guests::example("source-http")).expect("component");
    let policy = host.load(&bytes, &Limits::default()).expect("load");
    let grants = policy::Grants { dir: None, hosts: vec![server.authority()] };
    let params = vec![("url".to_owned(), format!("http://{}/export", server.authority()))];
    let took = time(3, || {
        let mut s = host.source(&policy, &grants, None).expect("session");
        s.begin_backup(&params, None).expect("begin");
        let mut got = 0usize;
        loop {
            match s.next_step().expect("step") {
                policy::SourceStep::Data(d) => got += d.len(),
                policy::SourceStep::End => break,
                policy::SourceStep::Item(_) => {}
            }
        }
        assert_eq!(got, size);
    });
    println!(
        "| source-http: {} MiB from a loopback HTTP server through the guest | {:.0} ms, {:.0} MiB/s |",
        size >> 20,
        ms(took),
        (size >> 20) as f64 / took.as_secs_f64()
    );
}

/// The least memory budget, to a wasm page, that `fits` accepts, between
/// one page and 1 GiB.
fn least_memory(fits: impl Fn(usize) -> bool) -> usize {
    const PAGE: usize = 64 << 10;
    let (mut low, mut high) = (1, (1usize << 30) / PAGE);
    assert!(fits(high * PAGE), "it does not fit in 1 GiB");
    while low < high {
        let mid = (low + high) / 2;
        if fits(mid * PAGE) { high = mid } else { low = mid + 1 }
    }
    low * PAGE
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n` snapshots one hour apart from `start`, each tagged `tags`.
fn hourly(start: i64, n: usize, tags: &[String]) -> Vec<RetentionSnapshot<'_>> {
    (0..n)
        .map(|i| {
            let time = start + i as i64 * 3_600;
            RetentionSnapshot { time, tags, size: 1 << 30, protected: false, verify_state: VerifyState::Ok }
        })
        .collect()
}
