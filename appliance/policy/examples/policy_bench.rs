//! Policy host figures for docs/benchmarks.md: upload-to-ready (compile +
//! describe), and retention decisions by `retention-gfs` over growing
//! snapshot sets (each call instantiates the component afresh).
//!
//!     cargo run --release -p policy --example policy_bench

use std::time::{Duration, Instant};

use policy::{Host, Limits, RetentionSnapshot, VerifyState};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let host = Host::new().expect("host");
    let path = policy_guests::example("retention-gfs");
    let bytes = std::fs::read(&path).expect("component");
    let limits = Limits { cpu: Duration::from_secs(10), memory: 512 << 20 };

    let loads: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            host.load(&bytes, &limits).expect("load");
            t.elapsed()
        })
        .collect();
    println!(
        "| upload to ready (compile + describe), {} KiB component | {:.1} ms |",
        bytes.len() >> 10,
        ms(median(loads))
    );

    let policy = host.load(&bytes, &limits).expect("load");
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
        let times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let d = host.retention(&policy, &snaps, start, &params, &limits).expect("decide");
                assert_eq!(d.len(), n);
                t.elapsed()
            })
            .collect();
        let what = if n == 0 {
            "instantiate + empty decision".to_owned()
        } else {
            format!("decision over {n} snapshots")
        };
        println!("| {what} | {:.2} ms |", ms(median(times)));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
