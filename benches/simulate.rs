//! Times `simulate` on 60 days of 1-minute data for one target: the NASA trace (61 days,
//! with a 3.5-day gap, load x150) and a synthetic, gap-free 60-day trace, through each
//! target of the example config and `config/examples/recommended.toml`'s `web` (each the
//! daemon's own tick against the simulated AWS) and the baselines (on `sales-api`). Run
//! with `cargo bench --bench simulate`; it prints the wall-clock times and the CPU time of
//! the median run (the thread's own, so other jobs on the machine do not count).
//! `CASES=web,sales-api` replays only those targets' own policies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use capstan::config;
use capstan::simulate::{self, Baseline, Bin, Options, ServiceModel, Trace};

const RUNS: usize = 3;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` RUNS times: the fastest and the median wall-clock time, the median CPU time.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration, Duration, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut cpu = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let (t, c) = (Instant::now(), thread_cpu());
        last = Some(std::hint::black_box(f()));
        times.push(t.elapsed());
        cpu.push(thread_cpu() - c);
    }
    times.sort();
    cpu.sort();
    (times[0], times[RUNS / 2], cpu[RUNS / 2], last.expect("ran"))
}

fn main() {
    let cfg = config::from_str("example.toml", config::EMBEDDED_EXAMPLE).expect("example config");
    let nasa_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/traces/nasa_http_1995_1min.csv"
    ))
    .expect("the NASA trace");
    let (parse_min, parse_med, _, nasa) =
        time(|| Trace::parse("nasa", &nasa_text).expect("parses"));
    println!(
        "parse NASA trace ({} rows): min {:.1} ms, median {:.1} ms",
        nasa.bins.len(),
        parse_min.as_secs_f64() * 1e3,
        parse_med.as_secs_f64() * 1e3
    );
    let nasa = nasa.scaled(150.0);
    let start = 1_700_000_000 / 60 * 60;
    let synthetic = Trace::new(
        (0..60 * 1440)
            .map(|m: i64| {
                let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
                Bin {
                    start: start + m * 60,
                    count: 60.0 * (400.0 + 300.0 * day.sin() + ((m * 7919) % 97) as f64),
                }
            })
            .collect(),
        chrono::FixedOffset::east_opt(0).unwrap(),
    )
    .expect("synthetic trace");
    let recommended = config::from_str(
        "recommended.toml",
        include_str!("../config/examples/recommended.toml"),
    )
    .expect("recommended config");
    let mut cases: Vec<(&config::Config, &str, Option<Baseline>)> = cfg
        .targets
        .iter()
        .map(|t| (&cfg, t.name.as_str(), None))
        .collect();
    cases.push((&recommended, "web", None));
    for b in Baseline::ALL {
        cases.push((&cfg, "sales-api", Some(b)));
    }
    for (label, trace) in [("NASA x150", &nasa), ("synthetic 60 d", &synthetic)] {
        // CASES=web,sales-api runs only those targets' own policies.
        let only = std::env::var("CASES").ok();
        for &(cfg, name, baseline) in &cases {
            if let Some(only) = &only {
                if baseline.is_some() || !only.split(',').any(|c| c == name) {
                    continue;
                }
            }
            let target = cfg.target(name).expect("example target");
            let plans = simulate::plan_metrics(target, &BTreeMap::new(), 60).expect("plans");
            let opts = Options {
                service: ServiceModel {
                    unit_capacity: 100.0,
                    ..ServiceModel::default()
                },
                poll_interval_secs: cfg.global.poll_interval_secs,
                global: cfg.global.clone(),
                initial: None,
                baseline,
            };
            let (min, med, cpu, out) = time(|| {
                simulate::simulate(target, &plans, trace, &opts, &mut |_| {}).expect("runs")
            });
            println!(
                "{label:>15} {name:<18} {:<20} {} bins, {:>6} ticks: min {:>7.1} ms, median {:>7.1} ms, CPU {:>7.1} ms ({:.2} us/tick)",
                out.summary.scaler,
                out.summary.bins,
                out.replay.ticks.len(),
                min.as_secs_f64() * 1e3,
                med.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e3,
                cpu.as_secs_f64() * 1e6 / out.replay.ticks.len().max(1) as f64
            );
        }
    }
}
