//! Compiling in a child process, as the daemon does: this test binary is
//! its own compiler child (`__compile-policy` runs `policy::compile_child`,
//! like `cairn __compile-policy`), and also plays children that misbehave
//! (`__spin`, `__balloon`, `__garbage`), to show that each limit is
//! enforced and reported as the limit it is.
//!
//! No test harness (`harness = false` in Cargo.toml): `main` decides
//! whether this process is the test run or a child.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use policy::{CacheKey, CompileIn, CompileLimit, CompileLimits, Host, Limits, Origin, PolicyError};

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("__compile-policy") => return policy::compile_child(),
        // Burn CPU and never answer.
        Some("__spin") => loop {
            std::hint::black_box(std::time::Instant::now());
        },
        // Allocate until the address space runs out.
        Some("__balloon") => {
            let mut hold = Vec::new();
            loop {
                hold.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hold);
            }
        }
        // Answer with bytes that are not an artifact.
        Some("__garbage") => {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = std::io::stdout().write_all(b"this is not a compiled component");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let tests: &[(&str, fn())] = &[
        ("compiles_in_a_child_like_in_this_process", compiles_in_a_child_like_in_this_process),
        ("the_child_refuses_what_is_not_a_component", the_child_refuses_what_is_not_a_component),
        ("the_wall_clock_limit_kills_the_child", the_wall_clock_limit_kills_the_child),
        ("the_cpu_limit_stops_the_child", the_cpu_limit_stops_the_child),
        ("the_memory_limit_stops_the_child", the_memory_limit_stops_the_child),
        ("an_answer_that_is_not_an_artifact_is_refused", an_answer_that_is_not_an_artifact_is_refused),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        (passed, failed) = if ok { (passed + 1, failed) } else { (passed, failed + 1) };
    }
    let result = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {result}. {passed} passed; {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The cache key the hosts of these tests share.
fn key() -> CacheKey {
    CacheKey::from_bytes([42; 32])
}

/// A host whose compiler is this binary, run as `ARG`.
fn host(arg: &str, limits: CompileLimits) -> Host {
    let program = std::env::current_exe().expect("this test binary");
    Host::with_compiler(CompileIn::Process { program, args: vec![OsString::from(arg)] })
        .expect("host")
        .with_compile_limits(limits)
        .with_cache_key(key())
}

fn gfs() -> Vec<u8> {
    std::fs::read(policy_guests::example("retention-gfs")).expect("component")
}

fn limit_hit(r: Result<policy::Ready, PolicyError>) -> CompileLimit {
    match r {
        Err(PolicyError::CompileLimit(limit)) => limit,
        Err(other) => panic!("expected a compile limit, got {other}"),
        Ok(_) => panic!("expected a compile limit, the component loaded"),
    }
}

fn compiles_in_a_child_like_in_this_process() {
    let bytes = gfs();
    let child = host("__compile-policy", CompileLimits::default());
    let ready = child.load_with_cache(&bytes, None, &Limits::default()).expect("compiled in a child");
    assert_eq!(ready.origin, Origin::Compiled { cache_problem: None });
    let artifact = ready.artifact.expect("the child's artifact");
    let local = Host::new().expect("host").with_cache_key(key());
    let fresh = local.load(&bytes, &Limits::default()).expect("compiled here");
    assert_eq!((ready.policy.world, &ready.policy.info), (fresh.world, &fresh.info));
    let snaps: Vec<policy::RetentionSnapshot> = (0..200)
        .map(|i| {
            let time = 1_780_000_000 + i * 7_919;
            policy::RetentionSnapshot {
                time,
                tags: &[],
                size: 1,
                protected: i % 17 == 0,
                verify_state: policy::VerifyState::None,
            }
        })
        .collect();
    let params = vec![("keep-daily".to_owned(), "5".to_owned()), ("keep-weekly".to_owned(), "3".to_owned())];
    let now = 1_780_000_000 + 200 * 7_919;
    assert_eq!(
        child.retention(&ready.policy, "host/c", &snaps, now, &params, &Limits::default()).expect("decide"),
        local.retention(&fresh, "host/c", &snaps, now, &params, &Limits::default()).expect("decide")
    );
    // What the child made, sealed by its parent with the cache key, is
    // what this build caches: it loads here as is.
    let cached = local.load_with_cache(&bytes, Some(&artifact), &Limits::default()).expect("cached");
    assert_eq!(cached.origin, Origin::Cached);
}

fn the_child_refuses_what_is_not_a_component() {
    let child = host("__compile-policy", CompileLimits::default());
    let err = child.load(b"definitely not wasm", &Limits::default()).expect_err("garbage");
    assert!(matches!(err, PolicyError::Invalid(_)), "{err}");
    assert!(err.to_string().starts_with("invalid policy component: "), "{err}");
    // A core module is refused before any child starts.
    let nowhere = Host::with_compiler(CompileIn::Process {
        program: PathBuf::from("/nonexistent/cairn"),
        args: vec![],
    })
    .expect("host");
    let err = nowhere.load(b"\0asm\x01\0\0\0", &Limits::default()).expect_err("core module").to_string();
    assert!(err.contains("core WebAssembly module"), "{err}");
    let err = nowhere.load(&gfs(), &Limits::default()).expect_err("no compiler").to_string();
    assert!(err.contains("cannot start the compiler process /nonexistent/cairn"), "{err}");
}

fn the_wall_clock_limit_kills_the_child() {
    // Starting the child alone takes longer than a millisecond, let alone
    // compiling.
    let wall = Duration::from_millis(1);
    let child = host("__compile-policy", CompileLimits { wall, ..CompileLimits::default() });
    let hit = limit_hit(child.load_with_cache(&gfs(), None, &Limits::default()));
    assert_eq!(hit, CompileLimit::WallClock(wall));
    assert!(hit.to_string().contains("wall-clock limit of 1 ms"), "{hit}");
}

fn the_cpu_limit_stops_the_child() {
    let limits =
        CompileLimits { cpu: Duration::from_secs(1), wall: Duration::from_secs(60), ..Default::default() };
    let err = host("__spin", limits).load(&gfs(), &Limits::default()).expect_err("spins");
    assert!(matches!(err, PolicyError::CompileLimit(CompileLimit::Cpu(1))), "{err}");
    assert!(err.to_string().contains("its CPU limit of 1 s (RLIMIT_CPU)"), "{err}");
}

fn the_memory_limit_stops_the_child() {
    let memory = 512 << 20;
    let limits = CompileLimits { memory, wall: Duration::from_secs(60), ..Default::default() };
    let r = host("__balloon", limits).load_with_cache(&gfs(), None, &Limits::default());
    assert_eq!(limit_hit(r), CompileLimit::Memory(memory));
}

fn an_answer_that_is_not_an_artifact_is_refused() {
    let err =
        host("__garbage", CompileLimits::default()).load(&gfs(), &Limits::default()).expect_err("garbage");
    assert!(matches!(err, PolicyError::Host(_)), "{err}");
    assert!(
        err.to_string().contains("unusable artifact: it is not a Cairn compiled-policy artifact"),
        "{err}"
    );
}
