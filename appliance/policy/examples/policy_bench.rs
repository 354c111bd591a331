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
    let child = Host::with_compiler(CompileIn::Process { program, args: vec!["__compile-policy".into()] })
        .expect("host");
    let host = Host::new().expect("host");
    let path = policy_guests::example("retention-gfs");
    let bytes = fs::read(&path).expect("component");
    let limits = Limits { cpu: Duration::from_secs(10), memory: 512 << 20 };
    let dir = std::env::temp_dir().join(format!("cairn-policy-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("bench dir");
    let name = format!("{}.{}.cwasm", blake3::hash(&bytes).to_hex(), child.artifact_tag());

    let upload = time(9, || {
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
    let in_process = time(5, || host.load(&bytes, &limits).expect("load"));
    println!("| the same compile + describe in this process, for comparison | {:.1} ms |", ms(in_process));
    let cached = time(25, || {
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
    for n in [0usize, 10, 1_000, 10_000, 100_000] {
        let start = 1_700_000_000i64;
        let snaps: Vec<RetentionSnapshot> = (0..n)
            .map(|i| {
                let time = start + i as i64 * 3_600;
                RetentionSnapshot {
                    id: format!("host/bench/{}", model::time::format_rfc3339(time)),
                    time,
                    tags: vec!["daily".into()],
                    size: 1 << 30,
                    protected: false,
                    verify_state: VerifyState::Ok,
                }
            })
            .collect();
        let runs = if n >= 100_000 { 3 } else { 9 };
        let took = time(runs, || {
            let d = child.retention(&policy, &snaps, start, &params, &limits).expect("decide");
            assert_eq!(d.len(), n);
        });
        let what = if n == 0 {
            "instantiate + empty decision".to_owned()
        } else {
            format!("decision over {n} snapshots")
        };
        println!("| {what} | {:.2} ms |", ms(took));
    }
    ExitCode::SUCCESS
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
