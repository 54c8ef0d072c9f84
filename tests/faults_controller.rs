//! Faults at the controller level, over the in-memory fake cloud with simulated time (so
//! hundreds of ticks take milliseconds): bad metric data for one target (missing, stale,
//! NaN, infinite, negative, 10^12), failing calls per target, and seeded random fault
//! sequences. In every case no capacity leaves the bounds, nothing scales in on missing
//! data, the healthy target is served, each tick makes one batched observe and one read
//! call whatever fails (no retry storm), and it converges within two ticks once the fault
//! clears. Each test prints a `FIGURES {json}` line (run with `--nocapture`).

mod common;

use capstan::config::{self, Config};
use capstan::controller::lease::SoleLeader;
use capstan::controller::state::MemoryStore;
use capstan::controller::{Controller, Options};
use capstan::fake::FakeCloud;
use capstan::policy::Sample;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

const TICK: i64 = 15;
/// api: 2..=20 on CPU 50%; workers: 1..=10 on a backlog of 10 per unit.
const API: (u32, u32) = (2, 20);
const WORKERS: (u32, u32) = (1, 10);

fn cfg() -> Config {
    let text = r#"
[global]
poll_interval = "15s"

[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 2
max = 20
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50

[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 10
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "orders"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 10
"#;
    config::from_str("test.toml", text).unwrap_or_else(|d| panic!("{}", d[0]))
}

fn t0() -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

type Ctl = Controller<FakeCloud, FakeCloud, MemoryStore, SoleLeader>;

fn controller(cloud: &FakeCloud) -> Ctl {
    Controller::new(
        cfg(),
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    )
}

fn in_bounds(target: &str, v: u32) -> bool {
    let (lo, hi) = if target == "api" { API } else { WORKERS };
    (lo..=hi).contains(&v)
}

/// One kind of bad data for the api's CPU metric.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// No datapoint (what the sources also report for stale data).
    Missing,
    Nan,
    Infinite,
    Negative,
    Absurd,
}

impl Bad {
    fn sample(self) -> Option<Sample> {
        match self {
            Bad::Missing => None,
            Bad::Nan => Some(Sample::Value(f64::NAN)),
            Bad::Infinite => Some(Sample::Value(f64::INFINITY)),
            Bad::Negative => Some(Sample::Value(-40.0)),
            Bad::Absurd => Some(Sample::Value(1e12)),
        }
    }
}

#[tokio::test]
async fn bad_metric_data_for_one_target_never_scales_it_in_and_the_other_is_served() {
    let mut figures = Vec::new();
    for bad in [
        Bad::Missing,
        Bad::Nan,
        Bad::Infinite,
        Bad::Negative,
        Bad::Absurd,
    ] {
        let cloud = FakeCloud::new();
        cloud.set_capacity_now("api", 8);
        cloud.set_capacity_now("workers", 5);
        cloud.set_metric("api", "cpu", Some(50.0));
        cloud.set_metric("workers", "backlog", Some(50.0));
        let mut c = controller(&cloud);
        let mut now = t0();
        for _ in 0..3 {
            c.tick(now).await;
            now += Duration::seconds(TICK);
        }
        assert_eq!((cloud.capacity("api"), cloud.capacity("workers")), (8, 5));

        // 20 ticks (5 minutes) of bad data for api; the workers' backlog rises meanwhile.
        cloud.set_sample("api", "cpu", bad.sample());
        cloud.set_metric("workers", "backlog", Some(90.0));
        let before = cloud.calls();
        let fault_ticks = 20;
        let mut lowest = u32::MAX;
        for _ in 0..fault_ticks {
            c.tick(now).await;
            now += Duration::seconds(TICK);
            lowest = lowest.min(cloud.capacity("api"));
        }
        let during = cloud.calls();
        assert_eq!(cloud.capacity("workers"), 9, "{bad:?}: workers served");
        match bad {
            // An absurd value is a value: api goes to its max, never beyond.
            Bad::Absurd => assert_eq!(cloud.capacity("api"), API.1),
            _ => assert_eq!(lowest, 8, "{bad:?}: api scaled in on bad data"),
        }
        // One batched observe and one batched read per tick, whatever the data.
        assert_eq!(during.observe_calls - before.observe_calls, fault_ticks);
        assert_eq!(during.read_calls - before.read_calls, fault_ticks);
        for (t, v) in &during.sets {
            assert!(in_bounds(t, *v), "{bad:?}: set {t} to {v}");
        }

        // The data comes back at twice the target: 8 -> 16 (two ticks at most; the
        // absurd case instead waits out the scale-down stabilization window, by design).
        cloud.set_metric("api", "cpu", Some(100.0));
        let mut ticks_to_converge = None;
        for i in 1..=2 {
            c.tick(now).await;
            now += Duration::seconds(TICK);
            if cloud.capacity("api") == 16 {
                ticks_to_converge = Some(i);
                break;
            }
        }
        if !matches!(bad, Bad::Absurd) {
            assert!(
                ticks_to_converge.is_some(),
                "{bad:?}: api at {}",
                cloud.capacity("api")
            );
        }
        figures.push(json!({
            "bad_data": format!("{bad:?}"),
            "fault_ticks": fault_ticks,
            "api_lowest_during": lowest,
            "api_after_fault": if matches!(bad, Bad::Absurd) { API.1 } else { 8 },
            "workers_served_to": 9,
            "ticks_to_converge": ticks_to_converge,
            "observe_calls_per_tick": 1,
        }));
    }
    println!(
        "FIGURES {}",
        json!({"scenario": "bad-metric-data", "cases": figures})
    );
}

#[tokio::test]
async fn failing_observe_set_and_reads_of_one_target_leave_the_other_served() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_capacity_now("workers", 2);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(20.0));
    let mut c = controller(&cloud);
    let mut now = t0();
    c.tick(now).await;
    now += Duration::seconds(TICK);
    let mut figures = Vec::new();
    for (name, observe, set, reads) in [
        ("observe", true, false, false),
        ("set", false, true, false),
        ("reads", false, false, true),
        ("all", true, true, true),
    ] {
        // The load doubles for both; api's calls fail for 6 ticks.
        let (api0, w0) = (cloud.capacity("api"), cloud.capacity("workers"));
        cloud.set_metric("api", "cpu", Some(100.0));
        cloud.set_metric("workers", "backlog", Some(f64::from(w0) * 20.0));
        cloud.fail("api", observe, set, reads);
        let before = cloud.calls();
        for _ in 0..6 {
            let r = c.tick(now).await;
            now += Duration::seconds(TICK);
            assert!(r.result("workers").unwrap().error.is_none());
        }
        let during = cloud.calls();
        assert_eq!(cloud.capacity("api"), api0, "{name}: api moved");
        assert_eq!(
            cloud.capacity("workers"),
            (w0 * 2).min(WORKERS.1),
            "{name}: workers not served"
        );
        assert_eq!(during.observe_calls - before.observe_calls, 6);
        assert_eq!(during.read_calls - before.read_calls, 6);
        // Back: api doubles within two ticks.
        cloud.fail("api", false, false, false);
        let mut ticks = None;
        for i in 1..=2 {
            c.tick(now).await;
            now += Duration::seconds(TICK);
            if cloud.capacity("api") == (api0 * 2).min(API.1) {
                ticks = Some(i);
                break;
            }
        }
        assert!(ticks.is_some(), "{name}: api at {}", cloud.capacity("api"));
        figures.push(json!({"failing": name, "ticks": 6, "ticks_to_converge": ticks}));
        // Steady state again before the next case.
        cloud.set_metric("api", "cpu", Some(50.0));
        cloud.set_metric(
            "workers",
            "backlog",
            Some(f64::from(cloud.capacity("workers")) * 10.0),
        );
        c.tick(now).await;
        now += Duration::seconds(TICK);
    }
    for (t, v) in cloud.calls().sets {
        assert!(in_bounds(&t, v), "set {t} to {v}");
    }
    println!(
        "FIGURES {}",
        json!({"scenario": "failing-calls-one-target", "cases": figures})
    );
}

/// Seeded random faults every tick (failing calls, bad or missing data, capacity changed
/// behind capstan's back, including out of bounds) over 2,000 ticks per seed: every
/// capacity set is within the bounds, and none goes below the capacity in force while the
/// target's data is missing (unless that capacity was above max).
#[tokio::test]
async fn random_fault_sequences_never_leave_bounds_or_scale_in_on_missing_data() {
    let seeds: u64 = std::env::var("CAPSTAN_FAULT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let ticks = 2_000;
    let (mut sets, mut faults, mut bad_ticks) = (0, 0, 0);
    for seed in 1..=seeds {
        let mut rng = common::Rng::new(seed);
        let cloud = FakeCloud::new();
        cloud.set_capacity_now("api", 4);
        cloud.set_capacity_now("workers", 2);
        let mut c = controller(&cloud);
        let mut now = t0();
        for _ in 0..ticks {
            let mut missing = Vec::new();
            for (target, metric) in [("api", "cpu"), ("workers", "backlog")] {
                let (o, s, r) = (rng.below(10) == 0, rng.below(10) == 0, rng.below(10) == 0);
                faults += [o, s, r].iter().filter(|b| **b).count();
                cloud.fail(target, o, s, r);
                let sample = match rng.below(12) {
                    0 => None,
                    1 => Some(Sample::Value(f64::NAN)),
                    2 => Some(Sample::Value(1e12)),
                    3 => Some(Sample::Value(-1.0)),
                    _ => Some(Sample::Value(rng.below(200) as f64)),
                };
                let bad =
                    r || !matches!(sample, Some(Sample::Value(v)) if v.is_finite() && v >= 0.0);
                if bad {
                    missing.push(target);
                    bad_ticks += 1;
                }
                cloud.set_sample(target, metric, sample);
                if rng.below(50) == 0 {
                    cloud.set_capacity_now(target, rng.below(30) as u32);
                }
            }
            let before: Vec<(String, u32)> = ["api", "workers"]
                .iter()
                .map(|t| (t.to_string(), cloud.capacity(t)))
                .collect();
            let n = cloud.calls().sets.len();
            c.tick(now).await;
            now += Duration::seconds(TICK);
            for (t, v) in &cloud.calls().sets[n..] {
                sets += 1;
                assert!(in_bounds(t, *v), "seed {seed}: set {t} to {v}");
                let was = before.iter().find(|(n, _)| n == t).unwrap().1;
                let max = if t == "api" { API.1 } else { WORKERS.1 };
                if missing.contains(&t.as_str()) && was <= max {
                    assert!(
                        *v >= was,
                        "seed {seed}: {t} scaled in {was} -> {v} on missing data"
                    );
                }
            }
        }
    }
    println!(
        "FIGURES {}",
        json!({
            "scenario": "random-fault-sequences",
            "seeds": seeds,
            "ticks": seeds * ticks,
            "faults_injected": faults,
            "target_ticks_with_bad_data": bad_ticks,
            "capacity_sets": sets,
            "out_of_bounds": 0,
            "scale_ins_on_missing_data": 0,
        })
    );
}
