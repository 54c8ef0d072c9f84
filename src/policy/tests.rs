//! Table-driven tests of every rule of the decision core, including the published
//! expectations of Kubernetes' replica_calculator_test.go and horizontal_test.go, KEDA's SQS
//! scaler, and the AWS step-scaling documentation; and property tests of its invariants.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::*;
use crate::config::{self, Target};

/// A target from TOML lines that follow `name`/`kind` of an ECS service.
fn target(body: &str) -> Target {
    let text = format!("[[target]]\nname = \"t\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"s\"\n{body}");
    match config::from_str("test.toml", &text) {
        Ok(mut c) => c.targets.remove(0),
        Err(d) => panic!(
            "test config invalid: {}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn t0() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// A history that has seen the target before (so HPA's first-sight seed does not apply).
fn seen() -> History {
    History {
        first_seen: Some((t0() - Duration::hours(1)).into()),
        ..History::default()
    }
}

const CPU_70: &str = r#"min = 1
max = 100
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 70
"#;

const BACKLOG_5: &str = r#"min = 0
max = 100
[[target.metric]]
name = "backlog"
source = "sqs"
queue = "q"
[[target.policy]]
type = "target_tracking"
metric = "backlog"
target_per_unit = 5
"#;

/// Drives a target through a sequence of (seconds after t0, current, metric value) ticks,
/// recording each decision as carried out. Returns the desired capacities.
fn run(t: &Target, metric: &str, ticks: &[(i64, Option<f64>)], start: u32) -> Vec<u32> {
    let mut h = seen();
    let mut cur = start;
    let mut out = Vec::new();
    for (secs, v) in ticks {
        let mut obs = Observation::new(at(*secs), cur);
        obs.metrics.insert(metric, v.map(Sample::Value));
        let d = decide(t, &obs, &h);
        h.record(t, &d, true);
        cur = d.desired;
        out.push(d.desired);
    }
    out
}

// ---- Target tracking: Kubernetes replica_calculator_test.go --------------------------

#[test]
fn hpa_replica_calculator_cases() {
    // (name, per-unit target or total per unit, value, current, ready, expected)
    enum K {
        Avg(f64),
        Total(f64),
    }
    let cases = [
        ("ScaleUp (CPU 50% vs 30%)", K::Avg(30.0), 50.0, 3, 3, 5),
        ("ScaleDown (CPU 28% vs 50%)", K::Avg(50.0), 28.0, 5, 5, 3),
        (
            "Tolerance (CPU 102% vs 100%)",
            K::Avg(100.0),
            102.0,
            3,
            3,
            3,
        ),
        (
            "SuperfluousMetrics (587% vs 100%)",
            K::Avg(100.0),
            587.0,
            4,
            4,
            24,
        ),
        (
            "ScaleUpCM (avg 20000 vs 15000)",
            K::Avg(15000.0),
            20000.0,
            3,
            3,
            4,
        ),
        (
            "ScaleDownCM (avg 12000 vs 20000)",
            K::Avg(20000.0),
            12000.0,
            5,
            5,
            3,
        ),
        (
            "ToleranceCM (avg 20666 vs 20000)",
            K::Avg(20000.0),
            20666.0,
            3,
            3,
            3,
        ),
        (
            "ScaleUpCMObject (20000 vs 15000)",
            K::Avg(15000.0),
            20000.0,
            3,
            3,
            4,
        ),
        (
            "ScaleDownCMObject (12000 vs 20000)",
            K::Avg(20000.0),
            12000.0,
            5,
            5,
            3,
        ),
        (
            "ScaleUpCMObjectIgnoresUnreadyPods (1 of 3 ready)",
            K::Avg(10000.0),
            50000.0,
            3,
            1,
            5,
        ),
        (
            "ToleranceCMObject (20666 vs 20000)",
            K::Avg(20000.0),
            20666.0,
            3,
            3,
            3,
        ),
        (
            "ScaleDownCMExternal (8600 vs 14334)",
            K::Avg(14334.0),
            8600.0,
            5,
            5,
            3,
        ),
        (
            "ToleranceCMExternal (8600 vs 8888)",
            K::Avg(8888.0),
            8600.0,
            3,
            3,
            3,
        ),
        (
            "ScaleUpCMPerPodObject (20000 at 5000/unit)",
            K::Total(5000.0),
            20000.0,
            3,
            3,
            4,
        ),
        (
            "ScaleDownPerPodCMObject (6000 at 2000/unit)",
            K::Total(2000.0),
            6000.0,
            5,
            5,
            3,
        ),
        (
            "TolerancePerPodCMObject (20166 at 5000/unit)",
            K::Total(5000.0),
            20166.0,
            4,
            4,
            4,
        ),
        (
            "ScaleUpPerPodCMExternal (8600 at 2150/unit)",
            K::Total(2150.0),
            8600.0,
            3,
            3,
            4,
        ),
        (
            "ScaleDownPerPodCMExternal (8600 at 2867/unit)",
            K::Total(2867.0),
            8600.0,
            5,
            5,
            3,
        ),
        (
            "TolerancePerPodCMExternal (8600 at 2900/unit)",
            K::Total(2900.0),
            8600.0,
            3,
            3,
            3,
        ),
    ];
    for (name, k, value, current, ready, want) in cases {
        let tt = match k {
            K::Avg(t) => TrackingTarget::Average(t),
            K::Total(t) => TrackingTarget::PerUnit(t),
        };
        let (got, detail) = track(tt, value, current, ready, (0.1, 0.1), None, "m", true);
        assert_eq!(got, Some(want), "{name}: {detail}");
    }
}

#[test]
fn tolerance_band_is_inclusive_and_per_direction() {
    // ratio exactly 1.1 stays (HPA: (1-down) <= r <= (1+up)).
    assert_eq!(
        track(
            TrackingTarget::Average(100.0),
            110.0,
            10,
            10,
            (0.1, 0.1),
            None,
            "m",
            true,
        )
        .0,
        Some(10)
    );
    assert_eq!(
        track(
            TrackingTarget::Average(100.0),
            111.0,
            10,
            10,
            (0.1, 0.1),
            None,
            "m",
            true,
        )
        .0,
        Some(12)
    );
    // A narrow up band and a wide down band.
    assert_eq!(
        track(
            TrackingTarget::Average(100.0),
            104.0,
            10,
            10,
            (0.02, 0.3),
            None,
            "m",
            true,
        )
        .0,
        Some(11)
    );
    assert_eq!(
        track(
            TrackingTarget::Average(100.0),
            75.0,
            10,
            10,
            (0.02, 0.3),
            None,
            "m",
            true,
        )
        .0,
        Some(10)
    );
    assert_eq!(
        track(
            TrackingTarget::Average(100.0),
            69.0,
            10,
            10,
            (0.02, 0.3),
            None,
            "m",
            true,
        )
        .0,
        Some(7)
    );
    // Config: tolerance_up/down override tolerance.
    let t = target(&CPU_70.replace(
        "target_value = 70",
        "target_value = 70\ntolerance = 0.2\ntolerance_up = 0.01",
    ));
    let PolicyKind::TargetTracking {
        tolerance_up,
        tolerance_down,
        ..
    } = t.policies[0].kind
    else {
        panic!()
    };
    assert_eq!((tolerance_up, tolerance_down), (0.01, 0.2));
}

#[test]
fn per_unit_average_needs_running_units_and_totals_scale_from_zero() {
    assert_eq!(
        track(
            TrackingTarget::Average(70.0),
            90.0,
            0,
            0,
            (0.1, 0.1),
            None,
            "cpu",
            true,
        )
        .0,
        None
    );
    assert_eq!(
        track(
            TrackingTarget::PerUnit(5.0),
            12.0,
            0,
            0,
            (0.1, 0.1),
            None,
            "backlog",
            true,
        )
        .0,
        Some(3)
    );
}

#[test]
fn several_policies_the_largest_proposal_wins() {
    let t = target(
        r#"min = 1
max = 50
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "rps"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Requests"
statistic = "Sum"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
[[target.policy]]
type = "target_tracking"
name = "requests"
metric = "rps"
target_per_unit = 100
"#,
    );
    let obs = Observation::new(t0(), 5)
        .with("cpu", 75.0)
        .with("rps", 900.0);
    let d = decide(&t, &obs, &seen());
    assert_eq!(d.desired, 9, "{}", d.reason());
    assert_eq!(d.explanation.winner.as_deref(), Some("requests"));
    assert_eq!(d.explanation.proposals[0].proposal, Some(8));
    assert!(d.reason().contains("(wins)"), "{}", d.reason());
}

#[test]
fn the_reason_is_rendered_from_the_explanation_and_serialized_with_the_decision() {
    let t = target(
        "min = 1\nmax = 50\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 50\n",
    );
    let obs = Observation::new(t0(), 5).with("cpu", 75.0);
    let mut d = decide(&t, &obs, &seen());
    let detail = &d.explanation.proposals[0].detail;
    assert_eq!(d.reason(), format!("scale out 5 -> 8: {detail} (wins)"));
    // A capacity reused from an earlier tick says so at the end.
    d.explanation.capacity_read_secs_ago = Some(30);
    assert!(d
        .reason()
        .ends_with("(wins); capacity 5 read 30s ago (settled)"));
    let json = d.to_json();
    assert_eq!(json["reason"], d.reason());
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "action",
            "at",
            "current",
            "desired",
            "explanation",
            "reason",
            "target"
        ]
    );
    // Without the text, no reason.
    assert_eq!(decide_quiet(&t, &obs, &seen()).reason(), "");
}

// ---- SQS backlog: KEDA aws_sqs_queue_scaler ---------------------------------------------

#[test]
fn keda_sqs_queue_length_counts_visible_in_flight_and_optionally_delayed() {
    let q = Some(Sample::Queue {
        visible: 200.0,
        in_flight: 100.0,
        delayed: 50.0,
    });
    let cases = [
        ("", 300.0),
        ("include_delayed = true", 350.0),
        ("include_in_flight = false", 200.0),
    ];
    for (extra, want) in cases {
        let t = target(&BACKLOG_5.replace("queue = \"q\"", &format!("queue = \"q\"\n{extra}")));
        assert_eq!(read_metric(&t.metrics[0], Some(&q)), Ok(want), "{extra}");
    }
    // queueLength 5, 300 messages: 60 units (the HPA AverageValue path).
    let t = target(BACKLOG_5);
    let mut obs = Observation::new(t0(), 60);
    obs.metrics.insert("backlog", q);
    assert_eq!(decide(&t, &obs, &seen()).desired, 60);
}

#[test]
fn keda_activation_from_zero_and_cooldown_to_zero() {
    let t = target(&BACKLOG_5.replace("queue = \"q\"", "queue = \"q\"\nactivation = 10"));
    // At zero, a backlog at or below the activation value keeps zero.
    let d = decide(
        &t,
        &Observation::new(t0(), 0).with("backlog", 10.0),
        &seen(),
    );
    assert_eq!(d.desired, 0, "{}", d.reason());
    // Above it: wake to one unit at once (KEDA), then scale to what the backlog needs.
    let mut wake = seen();
    let d = decide(&t, &Observation::new(t0(), 0).with("backlog", 11.0), &wake);
    assert_eq!(d.desired, 1, "{}", d.reason());
    wake.record(&t, &d, true);
    let d = decide(
        &t,
        &Observation::new(at(15), 1).with("backlog", 11.0),
        &wake,
    );
    assert_eq!(d.desired, 3, "{}", d.reason());
    // Missing data at zero does not wake the target.
    let d = decide(
        &t,
        &Observation::new(t0(), 0).with_missing("backlog"),
        &seen(),
    );
    assert_eq!(d.desired, 0, "{}", d.reason());
    // Idle, but not yet for the 5 minute cooldown: hold 1.
    let mut h = seen();
    h.last_active = Some(t0().into());
    let d = decide(&t, &Observation::new(at(120), 1).with("backlog", 0.0), &h);
    assert_eq!(d.desired, 1, "{}", d.reason());
    // Idle for exactly 5 minutes: still 1 (KEDA: lastActiveTime + cooldownPeriod < now).
    let d = decide(&t, &Observation::new(at(300), 1).with("backlog", 0.0), &h);
    assert_eq!(d.desired, 1, "{}", d.reason());
    // Idle for longer: zero.
    let d = decide(&t, &Observation::new(at(315), 1).with("backlog", 0.0), &h);
    assert_eq!(d.desired, 0, "{}", d.reason());
    assert!(d.reason().contains("scale to zero"), "{}", d.reason());
    // Missing data never scales to zero and keeps the countdown from starting.
    let d = decide(
        &t,
        &Observation::new(at(3600), 1).with_missing("backlog"),
        &h,
    );
    assert_eq!(d.desired, 1, "{}", d.reason());
    assert!(d.update.active);
}

// ---- Missing data and fallback -----------------------------------------------------------

#[test]
fn unusable_values_never_scale_in() {
    let t = target(CPU_70);
    for (label, sample) in [
        ("missing", None),
        ("NaN", Some(Sample::Value(f64::NAN))),
        ("infinite", Some(Sample::Value(f64::INFINITY))),
        ("negative", Some(Sample::Value(-5.0))),
    ] {
        let mut obs = Observation::new(t0(), 8);
        obs.metrics.insert("cpu", sample);
        let d = decide(&t, &obs, &seen());
        assert_eq!(d.desired, 8, "{label}: {}", d.reason());
        assert_eq!(d.explanation.metrics[0].value, None, "{label}");
        assert!(d.explanation.metrics[0].problem.is_some(), "{label}");
    }
    // Not even when the metric is simply absent from the observation.
    let d = decide(&t, &Observation::new(t0(), 8), &seen());
    assert_eq!(d.desired, 8);
}

#[test]
fn a_missing_metric_blocks_scale_in_but_not_scale_out_from_another() {
    let t = target(
        r#"min = 1
max = 50
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.metric]]
name = "mem"
source = "ecs_memory"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
[[target.policy]]
type = "target_tracking"
metric = "mem"
target_value = 50
"#,
    );
    let d = decide(
        &t,
        &Observation::new(t0(), 10)
            .with("cpu", 10.0)
            .with_missing("mem"),
        &seen(),
    );
    assert_eq!(d.desired, 10, "{}", d.reason());
    assert!(
        d.reason().contains("no scale-in while mem is missing"),
        "{}",
        d.reason()
    );
    let d = decide(
        &t,
        &Observation::new(t0(), 10)
            .with("cpu", 100.0)
            .with_missing("mem"),
        &seen(),
    );
    assert_eq!(d.desired, 20, "{}", d.reason());
}

#[test]
fn fallback_applies_after_more_than_n_failures_and_never_lowers() {
    let t = target(&format!(
        "{CPU_70}[target.fallback]\nafter_failures = 3\ncapacity = 6\n"
    ));
    let ticks: Vec<(i64, Option<f64>)> = (0..5).map(|i| (i * 15, None)).collect();
    // Failures 1..3 hold; the 4th (more than 3) raises to the fallback capacity.
    assert_eq!(run(&t, "cpu", &ticks, 2), vec![2, 2, 2, 6, 6]);
    // Above the fallback capacity nothing changes.
    assert_eq!(run(&t, "cpu", &ticks, 9), vec![9, 9, 9, 9, 9]);
    // A good value resets the count.
    let mut h = seen();
    h.consecutive_failures = 7;
    let d = decide(&t, &Observation::new(t0(), 6).with("cpu", 70.0), &h);
    assert_eq!(d.update.consecutive_failures, 0);
}

// ---- Step scaling: AWS semantics -----------------------------------------------------------

fn step_target(extra: &str) -> Target {
    target(&format!(
        r#"min = 0
max = 100
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "step"
name = "out"
metric = "cpu"
threshold = 50
comparison = ">="
adjustment_type = "percent_change_in_capacity"
steps = [{{ lower = 0, upper = 10, adjustment = 0 }}, {{ lower = 10, upper = 20, adjustment = 10 }}, {{ lower = 20, adjustment = 30 }}]
[[target.policy]]
type = "step"
name = "in"
metric = "cpu"
threshold = 50
comparison = "<="
adjustment_type = "percent_change_in_capacity"
steps = [{{ lower = -10, upper = 0, adjustment = 0 }}, {{ lower = -20, upper = -10, adjustment = -10 }}, {{ upper = -20, adjustment = -30 }}]
{extra}"#
    ))
}

#[test]
fn aws_step_scaling_documented_sequence() {
    // The AWS guide's walk-through: threshold 50, capacity 10, percent steps.
    let t = step_target("");
    let policies: Vec<&StepPolicy> = t
        .policies
        .iter()
        .map(|p| match &p.kind {
            PolicyKind::Step(s) => s,
            _ => unreachable!(),
        })
        .collect();
    let h = History::default();
    let cases = [
        (60.0, 10, 0, 11),
        (70.0, 11, 0, 14),
        (40.0, 14, 1, 13),
        (30.0, 13, 1, 10),
    ];
    for (value, current, which, want) in cases {
        let (p, detail, _) = step(
            policies[which],
            "x",
            value,
            current,
            None,
            t0().into(),
            &h,
            true,
        );
        assert_eq!(p, Some(want), "metric {value}: {detail}");
    }
    // The high alarm does not fire below its threshold, the low one not above.
    assert_eq!(
        step(policies[0], "x", 49.9, 10, None, t0().into(), &h, true).0,
        None
    );
    assert_eq!(
        step(policies[1], "x", 50.1, 10, None, t0().into(), &h, true).0,
        None
    );
}

#[test]
fn step_bounds_inclusive_lower_above_and_inclusive_upper_below() {
    let t = step_target("");
    let PolicyKind::Step(out) = &t.policies[0].kind else {
        panic!()
    };
    let PolicyKind::Step(inn) = &t.policies[1].kind else {
        panic!()
    };
    let h = History::default();
    // d = 10 belongs to [10, 20): +10% of 10 = 11.
    assert_eq!(
        step(out, "x", 60.0, 10, None, t0().into(), &h, true).0,
        Some(11)
    );
    // d = -10 belongs to (-20, -10]: -10% of 10 = 9.
    assert_eq!(
        step(inn, "x", 40.0, 10, None, t0().into(), &h, true).0,
        Some(9)
    );
    // d = -20 belongs to (-inf, -20]: -30% of 10 = 7.
    assert_eq!(
        step(inn, "x", 30.0, 10, None, t0().into(), &h, true).0,
        Some(7)
    );
}

#[test]
fn percent_rounding_and_min_adjustment_magnitude() {
    let mk = |adj: i64, mam: Option<u32>| StepPolicy {
        threshold: 0.0,
        comparison: crate::config::Comparison::Ge,
        breach_for_secs: 0,
        adjustment: AdjustmentType::PercentChangeInCapacity,
        min_adjustment_magnitude: mam,
        steps: vec![crate::config::Step {
            lower: None,
            upper: None,
            adjustment: adj,
        }],
    };
    let h = History::default();
    // (adjustment %, current, magnitude, expected). AWS: a fractional change above 1 rounds
    // down (12.7 -> 12), between 0 and 1 becomes 1, between -1 and 0 becomes -1, below -1
    // rounds toward zero (-6.7 -> -6).
    for (adj, cur, mam, want) in [
        (127, 10, None, 22),
        (67, 1, None, 2),
        (-5, 10, None, 9),
        (-67, 10, None, 4),
        (-30, 13, None, 10),
        (30, 11, None, 14),
        (25, 4, None, 5),
        (25, 4, Some(2), 6),
        (-25, 4, Some(2), 2),
        (50, 4, None, 6),
        (-100, 7, None, 0),
    ] {
        let (p, detail, _) = step(&mk(adj, mam), "x", 1.0, cur, None, t0().into(), &h, true);
        assert_eq!(p, Some(want), "{adj}% of {cur} (mam {mam:?}): {detail}");
    }
}

#[test]
fn change_and_exact_capacity_and_breach_duration() {
    let t = target(
        r#"min = 1
max = 20
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "step"
metric = "cpu"
threshold = 80
comparison = ">"
breach_for = "1m"
adjustment_type = "change_in_capacity"
steps = [{ lower = 0, upper = 10, adjustment = 1 }, { lower = 10, adjustment = 3 }]
[[target.policy]]
type = "step"
name = "panic"
metric = "cpu"
threshold = 99
comparison = ">="
adjustment_type = "exact_capacity"
steps = [{ lower = 0, adjustment = 15 }]
"#,
    );
    // 95% must last a minute before +3; ticks every 15 s.
    let ticks: Vec<(i64, Option<f64>)> = (0..6).map(|i| (i * 15, Some(95.0))).collect();
    assert_eq!(run(&t, "cpu", &ticks, 4), vec![4, 4, 4, 4, 7, 10]);
    // Exactly 80 is not "> 80".
    assert_eq!(
        run(
            &t,
            "cpu",
            &[(0, Some(80.0)), (60, Some(80.0)), (120, Some(80.0))],
            4
        ),
        vec![4, 4, 4]
    );
    // A dip below the threshold restarts the clock.
    let ticks = [
        (0, Some(95.0)),
        (30, Some(95.0)),
        (45, Some(50.0)),
        (60, Some(95.0)),
        (90, Some(95.0)),
        (120, Some(95.0)),
    ];
    assert_eq!(run(&t, "cpu", &ticks, 4), vec![4, 4, 4, 4, 4, 7]);
    // Exact capacity acts at once (no breach_for) and wins as the larger proposal (15),
    // shaped by the default scale-up rate limit: 4 -> 8 -> 15.
    assert_eq!(
        run(&t, "cpu", &[(0, Some(99.5)), (15, Some(99.5))], 4),
        vec![8, 15]
    );
}

// ---- Schedules ---------------------------------------------------------------------------

#[test]
fn a_sale_window_raises_min_at_once_and_ends_on_time() {
    let t = target(&format!(
        "{CPU_70}[[target.schedule]]\nname = \"black-friday\"\nstart = \"2026-11-27T00:00:00-05:00\"\nend = \"2026-12-01T00:00:00-05:00\"\nmin = 20\nmax = 120\n"
    ));
    let bf: DateTime<Utc> = "2026-11-27T05:00:00Z".parse().unwrap();
    let mut h = seen();
    h.first_seen = Some((bf - Duration::days(1)).into());
    // Just before: normal bounds.
    let d = decide(
        &t,
        &Observation::new(bf - Duration::seconds(1), 2).with("cpu", 70.0),
        &h,
    );
    assert_eq!((d.desired, d.explanation.bounds.min), (2, 1));
    // At the start: 2 -> 20 in one step, rate limits notwithstanding.
    let d = decide(&t, &Observation::new(bf, 2).with("cpu", 70.0), &h);
    assert_eq!(d.desired, 20, "{}", d.reason());
    assert!(d
        .explanation
        .bounds
        .sources
        .iter()
        .any(|s| s.contains("black-friday")));
    // Inside, max is 120: a hot service can go past the normal 100.
    let d = decide(
        &t,
        &Observation::new(bf + Duration::hours(1), 100).with("cpu", 95.0),
        &h,
    );
    assert_eq!(d.desired, 120, "{}", d.reason());
    // After the end max is 100 again: capacity comes down to it at once.
    let end: DateTime<Utc> = "2026-12-01T05:00:00Z".parse().unwrap();
    let d = decide(&t, &Observation::new(end, 120).with("cpu", 95.0), &h);
    assert_eq!(d.desired, 100, "{}", d.reason());
}

#[test]
fn cron_windows_follow_their_time_zone() {
    let t = target(&format!(
        "{CPU_70}[[target.schedule]]\nname = \"business\"\ncron = \"0 8 * * MON-FRI\"\ntimezone = \"America/New_York\"\nduration = \"10h\"\nfloor = 4\n"
    ));
    let s = &t.schedules[0];
    // 2026-11-23 is a Monday; New York is UTC-5 in November.
    for (when, want) in [
        ("2026-11-23T12:59:00Z", false),
        ("2026-11-23T13:00:00Z", true),
        ("2026-11-23T22:59:00Z", true),
        ("2026-11-23T23:00:00Z", false),
        ("2026-11-22T15:00:00Z", false), // Sunday
        ("2026-11-27T15:00:00Z", true),  // Friday
        ("2026-07-06T12:30:00Z", true),  // a July Monday, 08:30 EDT (UTC-4)
    ] {
        assert_eq!(schedule_active(s, when.parse().unwrap()), want, "{when}");
    }
    let d = decide(
        &t,
        &Observation::new("2026-11-23T14:00:00Z".parse().unwrap(), 2).with("cpu", 10.0),
        &seen(),
    );
    assert_eq!(d.desired, 4, "{}", d.reason());
}

#[test]
fn overlapping_windows_combine_to_the_most_generous() {
    let t = target(&format!(
        "{CPU_70}[[target.schedule]]\nname = \"a\"\nstart = \"2026-11-23T00:00:00Z\"\nend = \"2026-11-24T00:00:00Z\"\nmin = 10\nmax = 40\n\
         [[target.schedule]]\nname = \"b\"\nstart = \"2026-11-23T09:00:00Z\"\nend = \"2026-11-23T11:00:00Z\"\nmin = 5\nmax = 60\nfloor = 12\n\
         [[target.schedule]]\nname = \"c\"\nstart = \"2026-11-23T09:00:00Z\"\nend = \"2026-11-23T11:00:00Z\"\nmax = 8\n"
    ));
    let d = decide(&t, &Observation::new(t0(), 10).with("cpu", 70.0), &seen());
    let b = &d.explanation.bounds;
    assert_eq!(
        (b.min, b.max, b.floor),
        (12, 60, Some(12)),
        "{:?}",
        b.sources
    );
    assert_eq!(d.desired, 12);
}

// ---- Predictive floor ---------------------------------------------------------------------

fn predictive_target(mode: &str, breach: &str) -> Target {
    target(&format!(
        r#"min = 2
max = 10
[[target.metric]]
name = "rps"
source = "cloudwatch"
namespace = "Shop"
metric_name = "Requests"
statistic = "Sum"
[[target.policy]]
type = "target_tracking"
metric = "rps"
target_per_unit = 100
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 100
mode = "{mode}"
schedule_ahead = "10m"
max_capacity_breach = {breach}
"#
    ))
}

fn forecast(values: &[f64]) -> ForecastSeries {
    ForecastSeries {
        start: t0(),
        step_secs: 300,
        values: values.to_vec(),
    }
}

#[test]
fn predictive_floor_comes_schedule_ahead_early() {
    let t = predictive_target("forecast_and_scale", "\"honor\"");
    // Load now 300 (3 units); the forecast sees 750 in 10 minutes (bin 2).
    let mut obs = Observation::new(t0(), 3).with("rps", 300.0);
    obs.forecast = Some(std::sync::Arc::new(forecast(&[300.0, 320.0, 750.0, 800.0])));
    let d = decide(&t, &obs, &seen());
    assert_eq!(d.desired, 8, "{}", d.reason());
    let f = d.explanation.forecast.as_ref().unwrap();
    assert_eq!((f.capacity, f.applied), (Some(8), true));
    // Forecast only: published, not applied.
    let t = predictive_target("forecast_only", "\"honor\"");
    let d = decide(&t, &obs, &seen());
    assert_eq!(d.desired, 3, "{}", d.reason());
    assert_eq!(d.explanation.forecast.as_ref().unwrap().capacity, Some(8));
}

#[test]
fn a_forecast_with_bins_of_any_length_never_panics() {
    // A bin of 1e15 s puts the forecast's end past the last year chrono holds (a panic);
    // one of u64::MAX s overflowed computing it. The core asks for the end when the
    // forecast has no usable value for now: it starts later, or holds none.
    let t = predictive_target("forecast_and_scale", "\"honor\"");
    for (start, step_secs, values) in [
        (at(86_400 * 365), 1_000_000_000_000_000, vec![400.0]),
        (at(86_400 * 365), u64::MAX, vec![400.0, 500.0]),
        (t0(), u64::MAX, vec![f64::NAN, f64::NAN, f64::NAN]),
    ] {
        let fc = ForecastSeries {
            start,
            step_secs,
            values,
        };
        assert_eq!(fc.end(), DateTime::<Utc>::MAX_UTC);
        let mut obs = Observation::new(at(60), 3).with("rps", 300.0);
        obs.forecast = Some(std::sync::Arc::new(fc));
        let d = decide(&t, &obs, &seen());
        assert!(d.desired >= 3, "{}", d.reason());
    }
    assert_eq!(forecast(&[1.0, 2.0]).end(), at(600));
}

#[test]
fn predictive_max_capacity_breach() {
    let mut obs = Observation::new(t0(), 5).with("rps", 500.0);
    obs.forecast = Some(std::sync::Arc::new(forecast(&[1200.0, 1200.0])));
    let d = decide(
        &predictive_target("forecast_and_scale", "\"honor\""),
        &obs,
        &seen(),
    );
    assert_eq!(d.desired, 10, "honor keeps max: {}", d.reason());
    let d = decide(
        &predictive_target("forecast_and_scale", "{ increase_by_percent = 10 }"),
        &obs,
        &seen(),
    );
    // Forecast needs 12; max may rise to ceil(12 * 1.1) = 14; the floor is 12.
    assert_eq!(
        (d.desired, d.explanation.bounds.max),
        (12, 14),
        "{}",
        d.reason()
    );
}

#[test]
fn a_bad_forecast_stands_down_and_reactive_scaling_still_works() {
    let t = predictive_target("forecast_and_scale", "\"honor\"");
    let mut h = seen();
    // A day of checks where the forecast said 900 and 300 came: error 200%.
    for i in 0..20 {
        h.forecast_checks.push(ForecastCheck {
            at: (t0() - Duration::minutes(5 * (20 - i))).into(),
            forecast: 900.0,
            actual: 300.0,
        });
    }
    let mut obs = Observation::new(t0(), 3).with("rps", 650.0);
    obs.forecast = Some(std::sync::Arc::new(forecast(&[900.0, 900.0, 900.0])));
    let d = decide(&t, &obs, &h);
    let f = d.explanation.forecast.as_ref().unwrap();
    assert!(!f.applied && f.note.contains("standing down"), "{}", f.note);
    // The target-tracking policy still scales out on the real load.
    assert_eq!(d.desired, 7, "{}", d.reason());
    // Live checks are sampled at most every five minutes.
    assert!(d.update.forecast_check.is_some());
    let mut h2 = h.clone();
    h2.forecast_checks.push(ForecastCheck {
        at: (t0() - Duration::minutes(1)).into(),
        forecast: 1.0,
        actual: 1.0,
    });
    assert!(decide(&t, &obs, &h2).update.forecast_check.is_none());
}

// ---- Behavior ------------------------------------------------------------------------------

#[test]
fn scale_down_waits_out_the_stabilization_window() {
    let t = target(CPU_70);
    // 10 units at 70%, then load halves: HPA holds for 300 s, then drops (rate limit 100%).
    let mut ticks = vec![(0, Some(70.0))];
    ticks.extend((1..=22).map(|i| (i * 15, Some(35.0))));
    let got = run(&t, "cpu", &ticks, 10);
    // Recommendations of 10 from t=0 leave the window after 300 s (strictly older).
    assert!(got[..20].iter().all(|&d| d == 10), "{got:?}");
    assert_eq!(got[20], 5, "{got:?}");
}

#[test]
fn first_sight_holds_scale_down_like_hpa() {
    let t = target(CPU_70);
    let d = decide(
        &t,
        &Observation::new(t0(), 10).with("cpu", 7.0),
        &History::default(),
    );
    assert_eq!(d.desired, 10, "{}", d.reason());
    // The seed stays in the window: the next ticks are held too, until it leaves.
    let mut h = History::default();
    let mut cur = 10;
    let mut got = Vec::new();
    for i in 0..22 {
        let d = decide(&t, &Observation::new(at(i * 15), cur).with("cpu", 7.0), &h);
        h.record(&t, &d, true);
        cur = d.desired;
        got.push(cur);
    }
    assert!(got[..20].iter().all(|&c| c == 10), "{got:?}");
    assert_eq!(got[20], 1, "{got:?}");
    // Scale-up is not held.
    let d = decide(
        &t,
        &Observation::new(t0(), 10).with("cpu", 140.0),
        &History::default(),
    );
    assert_eq!(d.desired, 20, "{}", d.reason());
}

#[test]
fn scale_up_stabilization_takes_the_lowest_recent_recommendation() {
    let t = target(&format!(
        "{CPU_70}[target.behavior.scale_up]\nstabilization_window = \"1m\"\n"
    ));
    let ticks = [
        (0, Some(140.0)),
        (15, Some(70.0)),
        (30, Some(140.0)),
        (75, Some(140.0)),
        (80, Some(140.0)),
    ];
    // t=0: first tick sees only itself -> 20... but t=0 history is "seen" with no recs.
    assert_eq!(run(&t, "cpu", &ticks, 10), vec![20, 20, 20, 40, 40]);
}

#[test]
fn rate_limits_shape_a_big_jump() {
    let t = target(&format!(
        "{CPU_70}[target.behavior.scale_up]\npolicies = [{{ type = \"pods\", value = 2, period = \"1m\" }}]\n"
    ));
    let ticks: Vec<(i64, Option<f64>)> = (0..6).map(|i| (i * 15, Some(700.0))).collect();
    // Two units per rolling minute.
    assert_eq!(run(&t, "cpu", &ticks, 4), vec![6, 6, 6, 6, 8, 8]);
}

#[test]
fn cooldowns_and_warmup_hold_the_right_direction() {
    let base = format!("{CPU_70}[target.behavior]\nscale_out_cooldown = \"1m\"\nscale_in_cooldown = \"2m\"\nwarmup = \"30s\"\n[target.behavior.scale_down]\nstabilization_window = \"0s\"\n");
    let t = target(&base);
    let mut h = seen();
    // A scale-out from 5 to 10 at t0.
    h.last_scale_out = Some(t0().into());
    h.scale_ups.push(ScaleEvent {
        at: t0().into(),
        change: 5,
    });
    // Within the 1m scale-out cooldown the metric (still 2x the target, it lags) counts
    // from the 5 units before: 10 are already there, nothing more (AWS).
    let d = decide(&t, &Observation::new(at(30), 10).with("cpu", 140.0), &h);
    assert_eq!(d.desired, 10, "{}", d.reason());
    assert!(
        d.reason().contains("before the scale-out cooldown"),
        "{}",
        d.reason()
    );
    // Even more load inside the cooldown still scales out, by the difference.
    let d = decide(&t, &Observation::new(at(30), 10).with("cpu", 280.0), &h);
    assert_eq!(d.desired, 20, "{}", d.reason());
    let d = decide(&t, &Observation::new(at(61), 10).with("cpu", 140.0), &h);
    assert_eq!(d.desired, 20);
    // Warm-up: no scale-in while new units warm.
    let d = decide(&t, &Observation::new(at(20), 10).with("cpu", 7.0), &h);
    assert!(d.reason().contains("warming"), "{}", d.reason());
    assert_eq!(d.desired, 10);
    // Scale-in cooldown after a scale-in.
    let mut h = seen();
    h.last_scale_in = Some(t0().into());
    let d = decide(&t, &Observation::new(at(119), 10).with("cpu", 7.0), &h);
    assert_eq!(d.desired, 10, "{}", d.reason());
    let d = decide(&t, &Observation::new(at(120), 10).with("cpu", 7.0), &h);
    assert_eq!(d.desired, 1, "{}", d.reason());
    // A scale-out after the scale-in ends the scale-in cooldown (AWS); only warm-up holds.
    h.last_scale_out = Some(at(10).into());
    let d = decide(&t, &Observation::new(at(60), 10).with("cpu", 7.0), &h);
    assert_eq!(d.desired, 1, "{}", d.reason());
}

#[test]
fn scale_to_zero_respects_the_scale_in_holds() {
    let t = target(
        &BACKLOG_5
            .replace("queue = \"q\"", "queue = \"q\"\n")
            .to_string(),
    );
    let mut h = seen();
    h.last_active = Some(t0().into());
    let mut obs = Observation::new(at(400), 5).with("backlog", 0.0);
    obs.scale_in_blocked = Some("deployment in progress".into());
    let d = decide(&t, &obs, &h);
    assert_eq!(d.desired, 5, "{}", d.reason());
    obs.scale_in_blocked = None;
    let d = decide(&t, &obs, &h);
    assert_eq!(d.desired, 0, "{}", d.reason());
    let t = target(&format!(
        "{BACKLOG_5}[target.behavior]\ndisable_scale_in = true\n"
    ));
    assert_eq!(decide(&t, &obs, &h).desired, 5);
}

#[test]
fn units_still_starting_never_turn_a_hot_metric_into_a_scale_in() {
    // HPA ScaleUpUnreadyLessScale: 3 units, 1 not ready, 60% on the ready ones vs 30%:
    // the unready one counts as idle: 40% vs 30% -> 4.
    assert_eq!(
        track(
            TrackingTarget::Average(30.0),
            60.0,
            3,
            2,
            (0.1, 0.1),
            None,
            "m",
            true,
        )
        .0,
        Some(4)
    );
    // 10 asked, 2 ready at 80% vs 70%: with 8 units starting the load will spread: keep 10.
    let t = target(CPU_70);
    let d = decide(
        &t,
        &Observation::new(t0(), 10).with("cpu", 80.0).with_ready(2),
        &seen(),
    );
    assert_eq!(d.desired, 10, "{}", d.reason());
    // Far above target even counting the starting units: scale out, never in.
    let d = decide(
        &t,
        &Observation::new(t0(), 10).with("cpu", 700.0).with_ready(2),
        &seen(),
    );
    assert_eq!(d.desired, 20, "{}", d.reason());
}

#[test]
fn huge_capacities_do_not_overflow() {
    let t = target(CPU_70);
    let mut h = seen();
    for (i, cur) in [u32::MAX, u32::MAX, 50, 50].into_iter().enumerate() {
        let d = decide(
            &t,
            &Observation::new(at(i as i64 * 15), cur).with("cpu", 7.0),
            &h,
        );
        assert!(d.desired <= 100);
        h.record(&t, &d, true);
    }
}

#[test]
fn disable_scale_in_paused_and_deployments_hold() {
    let no_window = "[target.behavior.scale_down]\nstabilization_window = \"0s\"\n";
    let t = target(&format!(
        "{CPU_70}[target.behavior]\ndisable_scale_in = true\n{no_window}"
    ));
    assert_eq!(
        decide(&t, &Observation::new(t0(), 10).with("cpu", 7.0), &seen()).desired,
        10
    );
    assert_eq!(
        decide(&t, &Observation::new(t0(), 10).with("cpu", 140.0), &seen()).desired,
        20
    );
    let t = target(&format!(
        "{CPU_70}[target.behavior]\npaused = true\n{no_window}"
    ));
    let d = decide(&t, &Observation::new(t0(), 10).with("cpu", 140.0), &seen());
    assert_eq!(d.desired, 10);
    assert!(
        d.reason().contains("paused: policies propose 20"),
        "{}",
        d.reason()
    );
    // Paused still respects the bounds.
    assert_eq!(
        decide(&t, &Observation::new(t0(), 500).with("cpu", 140.0), &seen()).desired,
        100
    );
    let t = target(&format!("{CPU_70}{no_window}"));
    let mut obs = Observation::new(t0(), 10).with("cpu", 7.0);
    obs.scale_in_blocked = Some("deployment in progress".into());
    let d = decide(&t, &obs, &seen());
    assert_eq!(d.desired, 10);
    assert!(
        d.reason().contains("deployment in progress"),
        "{}",
        d.reason()
    );
}

#[test]
fn current_outside_bounds_is_corrected_at_once() {
    let t = target(CPU_70);
    assert_eq!(
        decide(&t, &Observation::new(t0(), 0).with("cpu", 0.0), &seen()).desired,
        1
    );
    assert_eq!(
        decide(&t, &Observation::new(t0(), 500).with("cpu", 70.0), &seen()).desired,
        100
    );
}

#[test]
fn a_clamp_tick_is_not_remembered_as_a_recommendation() {
    // Max 10, found at 12 with CPU at twice its target: the policies would want 24, but the
    // tick only sets 10. HPA stores no recommendation on such a tick, so when CPU then asks
    // for 6 the scale-down window holds nothing above it.
    let t = target(&CPU_70.replace("max = 100", "max = 10"));
    let mut h = seen();
    let d = decide(&t, &Observation::new(t0(), 12).with("cpu", 140.0), &h);
    assert_eq!(d.desired, 10, "{}", d.reason());
    assert_eq!(d.update.recommendation, None);
    h.record(&t, &d, true);
    assert!(
        h.recommendations.iter().all(|r| r.capacity <= 10),
        "{:?}",
        h.recommendations
    );
    // ceil(10 x 42 / 70) = 6, 15 s later: inside the 300 s scale-down window.
    let d = decide(&t, &Observation::new(at(15), 10).with("cpu", 42.0), &h);
    assert_eq!(d.desired, 6, "{}", d.reason());
    // A tick within the bounds is remembered as before.
    let d = decide(&t, &Observation::new(at(15), 10).with("cpu", 42.0), &seen());
    assert_eq!(d.update.recommendation, Some(6));
}

#[test]
fn explanation_is_one_line_and_json() {
    let t = target(CPU_70);
    let d = decide(&t, &Observation::new(t0(), 4).with("cpu", 140.0), &seen());
    assert_eq!(d.reason(), "scale out 4 -> 8: target_tracking:cpu: cpu 140 vs target 70 on 4 units: ceil(4 x 2.000) = 8 (wins)");
    assert!(!d.reason().contains('\n'));
    let j = d.to_json();
    assert_eq!(j["desired"], 8);
    assert_eq!(j["action"], "scale_out");
    assert_eq!(j["explanation"]["metrics"][0]["value"], 140.0);
    assert_eq!(j["explanation"]["winner"], "target_tracking:cpu");
}

#[test]
fn history_is_pruned_and_serializes() {
    let t = target(CPU_70);
    let mut h = seen();
    let mut cur = 4;
    for i in 0..2000 {
        let d = decide(
            &t,
            &Observation::new(at(i * 15), cur).with("cpu", if i % 40 < 20 { 140.0 } else { 20.0 }),
            &h,
        );
        h.record(&t, &d, true);
        cur = d.desired;
    }
    // 300 s window at 15 s ticks: at most 20 recommendations; events within 15 s.
    assert!(h.recommendations.len() <= 21, "{}", h.recommendations.len());
    assert!(h.scale_ups.len() + h.scale_downs.len() <= 2);
    let json = serde_json::to_string(&h).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}

// ---- Properties ---------------------------------------------------------------------------

/// Random targets: min 0 (scale to zero, with an activation value) or more, either kind of
/// target tracking, tolerances, rate limits, windows, fallback, disable_scale_in, warm-up
/// and cooldowns.
fn arb_target() -> impl Strategy<Value = Target> {
    (
        (0u32..5, 1u32..40, 0u32..3, 1u32..8, 0u32..4),
        (any::<bool>(), 0u32..3, any::<bool>(), 0u32..3, 0u32..3),
    )
        .prop_map(|((min, span, tol, pods, win), (per_unit, fb, no_in, warm, cool))| {
            let max = min + span;
            let tt = if per_unit { "target_per_unit = 10" } else { "target_value = 60" };
            let fallback = if fb > 0 {
                format!("[target.fallback]\nafter_failures = {fb}\ncapacity = {}\n", (min + span / 2).max(min))
            } else {
                String::new()
            };
            target(&format!(
                "min = {min}\nmax = {max}\n[[target.metric]]\nname = \"m\"\nsource = \"cloudwatch\"\nnamespace = \"N\"\nmetric_name = \"M\"\nactivation = 5\n\
                 [[target.policy]]\ntype = \"target_tracking\"\nmetric = \"m\"\n{tt}\ntolerance = 0.{tol}\n\
                 {fallback}[target.behavior]\ndisable_scale_in = {no_in}\nwarmup = \"{}s\"\nscale_out_cooldown = \"{}s\"\nscale_in_cooldown = \"{}s\"\nscale_to_zero_after = \"1m\"\n\
                 [target.behavior.scale_up]\npolicies = [{{ type = \"pods\", value = {pods}, period = \"30s\" }}, {{ type = \"percent\", value = 50, period = \"1m\" }}]\n\
                 [target.behavior.scale_down]\nstabilization_window = \"{}s\"\npolicies = [{{ type = \"percent\", value = 30, period = \"1m\" }}]\n",
                warm * 20,
                cool * 30,
                cool * 40,
                win * 30
            ))
        })
}

fn arb_value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        6 => (0.0f64..500.0).prop_map(Some),
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
        1 => Just(Some(-1.0)),
        1 => Just(Some(1e12)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Over random runs: within bounds, within rate limits, no scale-in on missing data.
    #[test]
    fn invariants_hold_over_random_runs(
        t in arb_target(),
        start in 0u32..60,
        values in proptest::collection::vec((arb_value(), 1i64..60, 0u32..100), 1..60),
    ) {
        let mut h = History::default();
        let mut cur = start;
        let mut now = t0();
        for (v, gap, ready_pct) in values {
            now += Duration::seconds(gap);
            let mut obs = Observation::new(now, cur);
            obs.ready = Some(cur * ready_pct / 100);
            obs.metrics.insert("m", v.map(Sample::Value));
            let d = decide(&t, &obs, &h);
            let (lo, hi) = (d.explanation.bounds.min, d.explanation.bounds.max);
            prop_assert!(d.desired >= lo && d.desired <= hi, "{} outside {lo}..{hi}: {}", d.desired, d.reason());
            prop_assert!(lo >= t.min && hi == t.max, "bounds {lo}..{hi} outside the target's {}..{}", t.min, t.max);
            if cur < lo || cur > hi {
                // Out of bounds: brought to the nearest bound, nothing else.
                prop_assert_eq!(d.desired, cur.clamp(lo, hi), "{}", d.reason());
            } else {
                let usable = v.is_some_and(|x| x.is_finite() && x >= 0.0);
                if !usable || t.behavior.disable_scale_in {
                    prop_assert!(d.desired >= cur, "scale-in on missing data or while disabled: {cur} -> {}: {}", d.desired, d.reason());
                }
                if d.desired != 0 {
                    prop_assert!(d.desired <= scale_up_limit(now.into(), cur, &h, &t.behavior.scale_up).max(lo), "up limit: {}", d.reason());
                    prop_assert!(d.desired >= scale_down_limit(now.into(), cur, &h, &t.behavior.scale_down).min(hi), "down limit: {}", d.reason());
                }
                if cur == 0 && !usable {
                    prop_assert_eq!(d.desired, lo, "missing data woke a target at zero: {}", d.reason());
                }
            }
            h.record(&t, &d, true);
            cur = d.desired;
        }
    }

    /// Inside the dead band, nothing moves.
    #[test]
    fn no_move_inside_the_dead_band(t in arb_target(), cur in 1u32..40, r in -1.0f64..1.0) {
        let PolicyKind::TargetTracking { target: tt, tolerance_up, tolerance_down } = t.policies[0].kind else { unreachable!() };
        prop_assume!(cur >= t.min.max(1) && cur <= t.max);
        let ratio = if r >= 0.0 { 1.0 + r * tolerance_up } else { 1.0 + r * tolerance_down };
        let value = match tt {
            TrackingTarget::Average(x) => x * ratio,
            TrackingTarget::PerUnit(x) => x * cur as f64 * ratio,
        };
        let d = decide(&t, &Observation::new(t0(), cur).with("m", value), &seen());
        prop_assert_eq!(d.desired, cur, "{}", d.reason());
    }

    /// Any observation and any history: no panic, bounds hold.
    #[test]
    fn never_panics_and_stays_in_bounds(t in arb_target(), cur in prop_oneof![0u32..200, Just(u32::MAX), any::<u32>()], v in arb_value(), ready in proptest::option::of(any::<u32>()), fails in prop_oneof![0u32..10, Just(u32::MAX)]) {
        let mut h = seen();
        h.consecutive_failures = fails;
        let mut obs = Observation::new(t0(), cur);
        obs.ready = ready;
        obs.metrics.insert("m", v.map(Sample::Value));
        let d = decide(&t, &obs, &h);
        prop_assert!(d.desired <= t.max);
        prop_assert!(d.desired >= t.min || (t.min == 0 && d.desired == 0));
    }
}

/// Whether a minute-by-minute search finds a start of the cron window `s` in
/// `(now - duration, now]`; a wall-clock time repeated when the clocks go back starts a
/// window once (cron), at its first occurrence.
fn brute_open(s: &crate::config::Schedule, now: DateTime<Utc>) -> bool {
    let crate::config::ScheduleWhen::Cron {
        timezone,
        duration_secs,
        cron,
        ..
    } = &s.when
    else {
        unreachable!()
    };
    let repeated = |m: DateTime<Utc>| {
        (m - Duration::hours(1))
            .with_timezone(timezone)
            .naive_local()
            == m.with_timezone(timezone).naive_local()
    };
    let minutes = (*duration_secs / 60) as i64;
    let now = now - Duration::seconds(now.timestamp().rem_euclid(60));
    (0..minutes).any(|k| {
        let m = now - Duration::minutes(k);
        cron.is_time_matching(&m.with_timezone(timezone))
            .unwrap_or(false)
            && !repeated(m)
    })
}

#[test]
fn cron_windows_match_a_minute_by_minute_search_across_weeks_and_dst() {
    let t = target(&format!(
        "{CPU_70}[[target.schedule]]\nname = \"w\"\ncron = \"30 9 * * SUN,WED\"\ntimezone = \"America/New_York\"\nduration = \"6h\"\nfloor = 3\n"
    ));
    let s = &t.schedules[0];
    // Checked every 23 minutes from late October to late November 2026 (DST ends in New
    // York on 2026-11-01).
    let mut now: DateTime<Utc> = "2026-10-20T00:00:00Z".parse().unwrap();
    let end: DateTime<Utc> = "2026-11-25T00:00:00Z".parse().unwrap();
    let mut open = 0;
    while now < end {
        let brute = brute_open(s, now);
        assert_eq!(schedule_active(s, now), brute, "{now}");
        open += brute as u32;
        now += Duration::minutes(23);
    }
    assert!(open > 50, "the windows were open at some point: {open}");
}

#[test]
fn cron_windows_starting_in_the_repeated_hour_start_once() {
    // Every 20 minutes for 7 minutes in Paris, where 02:00-03:00 happens twice on
    // 2026-10-25: 02:00, 02:20 and 02:40 start a window the first time only.
    let t = rich_target();
    let s = &t.schedules[0];
    let mut now: DateTime<Utc> = "2026-10-24T22:00:00Z".parse().unwrap();
    let (mut open, mut checked) = (0, 0);
    while now < "2026-10-25T04:00:00Z".parse::<DateTime<Utc>>().unwrap() {
        let brute = brute_open(s, now);
        assert_eq!(schedule_active(s, now), brute, "{now}");
        open += brute as u32;
        checked += 1;
        now += Duration::seconds(67);
    }
    // 6 hours hold 18 starts on the clock, 3 of them in the second pass of the repeated
    // hour: 15 windows of 7 minutes, sampled every 67 s (within a sample per window).
    let open_secs = open as f64 * 67.0;
    assert!(
        (open_secs - 15.0 * 420.0).abs() < 15.0 * 67.0,
        "{open} of {checked}"
    );
    assert!(!schedule_active(s, "2026-10-25T01:45:00Z".parse().unwrap()));
    assert!(schedule_active(s, "2026-10-25T00:45:00Z".parse().unwrap()));
}

/// A target with every kind of policy and two recurring windows (one short and frequent,
/// one spanning the DST change of its zone), for the equivalence checks below.
fn rich_target() -> Target {
    target(
        "min = 1\nmax = 60\n\
         [[target.metric]]\nname = \"m\"\nsource = \"cloudwatch\"\nnamespace = \"N\"\nmetric_name = \"M\"\n\
         [[target.metric]]\nname = \"q\"\nsource = \"sqs\"\nqueue = \"jobs\"\n\
         [[target.metric]]\nname = \"rps\"\nsource = \"cloudwatch\"\nnamespace = \"N\"\nmetric_name = \"R\"\nstatistic = \"Sum\"\n\
         [[target.policy]]\ntype = \"target_tracking\"\nmetric = \"m\"\ntarget_value = 60\n\
         [[target.policy]]\ntype = \"target_tracking\"\nmetric = \"q\"\ntarget_per_unit = 20\n\
         [[target.policy]]\ntype = \"step\"\nmetric = \"m\"\nthreshold = 90\ncomparison = \">=\"\nbreach_for = \"1m\"\n\
         adjustment_type = \"percent_change_in_capacity\"\nmin_adjustment_magnitude = 2\n\
         steps = [{ lower = 0, upper = 5, adjustment = 20 }, { lower = 5, adjustment = 50 }]\n\
         [[target.policy]]\ntype = \"predictive\"\nmetric = \"rps\"\ntarget_per_unit = 100\nmode = \"forecast_and_scale\"\n\
         [[target.schedule]]\nname = \"often\"\ncron = \"*/20 * * * *\"\ntimezone = \"Europe/Paris\"\nduration = \"7m\"\nmin = 3\n\
         [[target.schedule]]\nname = \"business\"\ncron = \"30 1 * * *\"\ntimezone = \"America/New_York\"\nduration = \"10h\"\nfloor = 4\n\
         [[target.schedule]]\nname = \"sale\"\nstart = \"2026-11-01T04:00:00Z\"\nend = \"2026-11-01T09:00:00Z\"\nmax = 80\n\
         [target.behavior]\nscale_in_cooldown = \"1m\"\nwarmup = \"30s\"\n\
         [target.fallback]\nafter_failures = 3\ncapacity = 6\n",
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `decide_quiet` decides exactly what `decide` does (only the text is missing), and a
    /// history's cached window states never change a decision: the same run with the cache
    /// dropped before every tick gives the same decisions and histories. The runs cross the
    /// end of DST in New York and Paris and the edges of every window.
    #[test]
    fn quiet_and_cached_decisions_equal_full_fresh_ones(
        start_min in 0i64..(3 * 24 * 60),
        start in 0u32..70,
        steps in proptest::collection::vec(
            (arb_value(), arb_value(), prop_oneof![1i64..120, 600i64..7200], 0u32..100, any::<bool>()),
            1..80,
        ),
    ) {
        let t = rich_target();
        let mut now: DateTime<Utc> =
            "2026-10-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(start_min);
        let fc = ForecastSeries {
            start: now,
            step_secs: 300,
            values: (0..2000).map(|i| 500.0 + (i % 288) as f64 * 7.0).collect(),
        };
        let (mut h, mut fresh) = (History::default(), History::default());
        let mut cur = start;
        for (m, q, gap, ready_pct, blocked) in steps {
            now += Duration::seconds(gap);
            let mut obs = Observation::new(now, cur);
            obs.ready = Some(cur * ready_pct / 100);
            obs.metrics.insert("m", m.map(Sample::Value));
            obs.metrics.insert("q", q.map(|v| Sample::Queue { visible: v, in_flight: 3.0, delayed: 1.0 }));
            obs.metrics.insert("rps", m.map(|v| Sample::Value(v * 10.0)));
            obs.forecast = Some(std::sync::Arc::new(fc.clone()));
            obs.scale_in_blocked = blocked.then(|| "deployment".to_string());
            let full = decide(&t, &obs, &h);
            let quiet = decide_quiet(&t, &obs, &h);
            fresh.cache = Cache::default();
            let uncached = decide(&t, &obs, &fresh);
            for (label, d) in [("quiet", &quiet), ("uncached", &uncached)] {
                prop_assert_eq!(d.desired, full.desired, "{} at {}: {}", label, now, full.reason());
                prop_assert_eq!(d.action, full.action);
                prop_assert_eq!(d.update.recommendation, full.update.recommendation);
                prop_assert_eq!(d.update.consecutive_failures, full.update.consecutive_failures);
                prop_assert_eq!(d.update.active, full.update.active);
                prop_assert_eq!(&d.update.breaches, &full.update.breaches);
                prop_assert_eq!(d.update.forecast_check, full.update.forecast_check);
                prop_assert_eq!(
                    (d.explanation.bounds.min, d.explanation.bounds.max, d.explanation.bounds.floor),
                    (full.explanation.bounds.min, full.explanation.bounds.max, full.explanation.bounds.floor),
                    "{} at {}", label, now
                );
                let nums = |d: &Decision| d.explanation.forecast.as_ref().map(|f| (f.predicted_load, f.capacity, f.error, f.applied));
                prop_assert_eq!(nums(d), nums(&full));
                prop_assert_eq!(
                    d.explanation.proposals.iter().map(|p| p.proposal).collect::<Vec<_>>(),
                    full.explanation.proposals.iter().map(|p| p.proposal).collect::<Vec<_>>()
                );
            }
            prop_assert!(!quiet.explained && quiet.reason().is_empty() && full.explained && !full.reason().is_empty());
            prop_assert_eq!(uncached.reason(), full.reason());
            h.record(&t, &quiet, true);
            fresh.record(&t, &full, true);
            prop_assert_eq!(&h, &fresh);
            cur = full.desired;
        }
    }
}

#[test]
fn window_states_hold_until_their_edge() {
    let t = rich_target();
    let s = &t.schedules[1];
    let mut now: DateTime<Utc> = "2026-10-30T00:00:00Z".parse().unwrap();
    let end: DateTime<Utc> = "2026-11-04T00:00:00Z".parse().unwrap();
    let mut edges = 0;
    while now < end {
        let w = window_state(s, now).unwrap();
        assert!(w.until > now);
        // Unchanged just before the edge, changed (or re-opened by a later start) at it.
        let before = w.until - Duration::seconds(1);
        assert_eq!(schedule_active(s, before), w.open, "{now} -> {}", w.until);
        if w.open {
            // A 10 h window that starts daily closes at its end.
            assert!(!schedule_active(s, w.until), "{}", w.until);
        } else {
            assert!(schedule_active(s, w.until), "{}", w.until);
        }
        now = w.until;
        edges += 1;
    }
    assert!(edges >= 9, "open and close once a day: {edges}");
}

// ---- Write-ahead changes: pending, ambiguous, reconciled --------------------------------

/// Two units per rolling minute, a 1-minute scale-out cooldown.
fn pods_2_per_minute() -> Target {
    target(&format!(
        "{CPU_70}[target.behavior]\nscale_out_cooldown = \"1m\"\n[target.behavior.scale_up]\npolicies = [{{ type = \"pods\", value = 2, period = \"1m\" }}]\n"
    ))
}

#[test]
fn an_ambiguous_change_counts_for_rate_limits_until_a_read_drops_it() {
    let t = pods_2_per_minute();
    let mut h = seen();
    // 4 -> 6 written ahead; the call's answer is lost.
    let d = decide(&t, &Observation::new(t0(), 4).with("cpu", 280.0), &h);
    assert_eq!(d.desired, 6, "{}", d.reason());
    h.intend(&t, &d, 3);
    h.answer(ChangeAnswer::Ambiguous);
    let p = h.pending.expect("still pending");
    assert_eq!((p.from, p.to, p.fencing), (4, 6, 3));
    assert_eq!(p.state, PendingState::Ambiguous);
    // The resource read back 4 would look like room for 2 more: the limit says no, the
    // change in doubt has used this minute's 2 units.
    let d = decide(&t, &Observation::new(at(10), 4).with("cpu", 280.0), &h);
    assert_eq!(d.desired, 4, "{}", d.reason());
    // A fresh read says the change did not happen: dropped, the 2 units are free again,
    // and the cooldown clock is back where it was.
    assert!(matches!(h.reconcile(4), Some(Reconciled::Dropped(_))));
    assert!(h.pending.is_none());
    assert_eq!(h.added_within(at(10).into(), 60), 0);
    assert_eq!(h.last_scale_out, None);
    let d = decide(&t, &Observation::new(at(10), 4).with("cpu", 280.0), &h);
    assert_eq!(d.desired, 6, "{}", d.reason());
}

#[test]
fn a_confirmed_change_keeps_counting_and_a_refused_one_never_did() {
    let t = pods_2_per_minute();
    let mut h = seen();
    let d = decide(&t, &Observation::new(t0(), 4).with("cpu", 280.0), &h);
    h.intend(&t, &d, 1);
    // A process that died after the call (pending is Intended) restarts and reads 6.
    let mut restarted: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    assert_eq!(restarted.pending, h.pending);
    assert!(matches!(
        restarted.reconcile(6),
        Some(Reconciled::Confirmed(_))
    ));
    assert_eq!(restarted.added_within(at(10).into(), 60), 2);
    let d = decide(
        &t,
        &Observation::new(at(10), 6).with("cpu", 280.0),
        &restarted,
    );
    assert_eq!(d.desired, 6, "{}", d.reason());
    // A definite refusal (throttled, invalid): no event, no cooldown.
    h.answer(ChangeAnswer::NotApplied);
    assert!(h.pending.is_none());
    assert!(h.scale_ups.is_empty() && h.last_scale_out.is_none());
    assert_eq!(h.reconcile(4), None, "nothing left to settle");
    // An applied answer keeps the event and clears the pending mark.
    let mut h = seen();
    h.intend(&t, &d_up(&t, &h), 1);
    h.answer(ChangeAnswer::Applied);
    assert!(h.pending.is_none());
    assert_eq!(h.added_within(at(10).into(), 60), 2);
}

fn d_up(t: &Target, h: &History) -> Decision {
    decide(t, &Observation::new(t0(), 4).with("cpu", 280.0), h)
}

#[test]
fn a_stored_history_without_a_pending_change_still_loads() {
    let h = seen();
    let json = serde_json::to_string(&h).unwrap();
    assert!(!json.contains("pending"), "{json}");
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h);
}
