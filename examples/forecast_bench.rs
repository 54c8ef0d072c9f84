//! Times `forecast` on 14 days of 5-minute history (4032 points, with a gap, an outage
//! and a spike), the size capstan feeds it from CloudWatch. On a busy machine the
//! wall-clock tail shows the scheduler; the thread's CPU time (Linux) is the cost.
//!
//! ```text
//! cargo run --release --example forecast_bench
//! ```

use std::time::Instant;

use capstan::forecast;

use forecast::{forecast, ForecastConfig, Point};

fn main() {
    let cfg = ForecastConfig::default();
    let now: i64 = 1_700_006_400;
    let n = cfg.max_history_secs / cfg.step_secs;
    let history: Vec<Point> = (0..n)
        .map(|k| {
            let at = now - (n - k) * cfg.step_secs;
            let phase = std::f64::consts::TAU * (at % 86_400) as f64 / 86_400.0;
            let mut value =
                1000.0 * (1.2 + phase.sin()) * (1.0 + 0.1 * ((k * 7919) % 13) as f64 / 13.0);
            if (1000..1100).contains(&k) {
                value = 0.0; // outage
            }
            if (2000..2010).contains(&k) {
                value *= 4.0; // flash crowd
            }
            Point { at, value }
        })
        .filter(|p| !(p.at % 86_400 < 3600 && p.at / 86_400 % 5 == 0)) // gaps
        .collect();
    let runs = 500;
    let cpu_before = thread_cpu_ns();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let f = forecast(&history, now, &cfg).expect("forecast");
            std::hint::black_box(&f);
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu_ms = match (cpu_before, thread_cpu_ns()) {
        (Some(a), Some(b)) => format!("{:.2} ms", (b - a) as f64 / 1e6 / runs as f64),
        _ => "n/a".into(),
    };
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((runs as f64 - 1.0) * q) as usize];
    println!(
        "forecast() on {} points ({} s bins, 48 h horizon), {runs} runs: CPU time {cpu_ms} per run; \
         wall clock min {:.2} ms, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        history.len(),
        cfg.step_secs,
        times[0],
        pct(0.5),
        pct(0.99),
        times[runs - 1]
    );
}

/// CPU time of this thread so far, from `/proc/thread-self/schedstat` (Linux only).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
