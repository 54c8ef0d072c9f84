//! The control loop over the in-memory fake cloud: reaction within one tick, dry run,
//! followers, failure isolation, restart safety and reloads.

use std::sync::{Arc, Mutex};

use capstan::aws::AwsError;
use capstan::config::{self, Config};
use capstan::controller::lease::{Lease, LeaseState, SoleLeader};
use capstan::controller::state::{LocalStore, MemoryStore};
use capstan::controller::{Controller, Options, Outcome};
use capstan::fake::FakeCloud;
use chrono::{DateTime, Duration, Utc};

fn cfg(extra_global: &str) -> Config {
    let text = format!(
        r#"
[global]
poll_interval = "15s"
{extra_global}

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
"#
    );
    config::from_str("test.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
}

/// A controller over the fake cloud with `config`, an in-memory store, sole leader.
fn on_fake(
    cloud: &FakeCloud,
    config: Config,
) -> Controller<FakeCloud, FakeCloud, MemoryStore, SoleLeader> {
    Controller::new(
        config,
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    )
}

fn t0() -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

fn controller(
    cloud: &FakeCloud,
    store: &MemoryStore,
    options: Options,
) -> Controller<FakeCloud, FakeCloud, MemoryStore, SoleLeader> {
    Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        store.clone(),
        SoleLeader,
        options,
    )
}

#[tokio::test]
async fn a_load_step_scales_out_within_one_tick() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(10.0));
    let store = MemoryStore::default();
    let mut c = controller(&cloud, &store, Options::default());
    let r = c.tick(t0()).await;
    assert_eq!(r.applied(), 0, "steady state: {:?}", r.results);
    // The load doubles: the very next tick sets 8.
    cloud.set_metric("api", "cpu", Some(100.0));
    let r = c.tick(t0() + Duration::seconds(15)).await;
    assert_eq!(cloud.capacity("api"), 8);
    assert!(matches!(
        r.result("api").unwrap().outcome,
        Some(Outcome::Applied { .. })
    ));
    assert_eq!(cloud.calls().sets, vec![("api".to_string(), 8)]);
}

#[tokio::test]
async fn dry_run_decides_but_never_calls_a_mutating_api() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    cloud.set_metric("workers", "backlog", Some(95.0));
    let store = MemoryStore::default();
    let mut c = Controller::new(
        cfg("dry_run = true"),
        cloud.clone(),
        cloud.clone(),
        store,
        SoleLeader,
        Options::default(),
    );
    for i in 0..20 {
        let r = c.tick(t0() + Duration::seconds(15 * i)).await;
        let api = r.result("api").unwrap();
        assert_eq!(api.decision.as_ref().unwrap().desired, 8);
        assert!(matches!(&api.outcome, Some(Outcome::Skipped { why }) if why == "dry run"));
    }
    assert!(
        cloud.calls().sets.is_empty(),
        "mutating calls: {:?}",
        cloud.calls().sets
    );
    assert_eq!(cloud.capacity("api"), 4);
    assert_eq!(
        cloud.calls().observe_calls,
        20,
        "one batched observe per tick"
    );
}

/// A lease whose holder a test decides.
#[derive(Clone)]
struct ScriptedLease(Arc<Mutex<Result<bool, ()>>>);

impl Lease for ScriptedLease {
    async fn acquire_or_renew(&self, _now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        match *self.0.lock().unwrap() {
            Ok(leader) => Ok(LeaseState {
                leader,
                holder: None,
                fencing: 1,
                ..LeaseState::default()
            }),
            Err(()) => Err(AwsError::new(
                capstan::aws::ErrorClass::Transient,
                "dynamodb",
                "PutItem",
                "lease",
                "unreachable",
            )),
        }
    }
    async fn release(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

#[tokio::test]
async fn followers_and_a_leader_that_lost_its_lease_never_act() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    let lease = ScriptedLease(Arc::new(Mutex::new(Ok(false))));
    let mut c = Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        lease.clone(),
        Options::default(),
    );
    let r = c.tick(t0()).await;
    assert!(!r.leader);
    assert!(
        matches!(&r.result("api").unwrap().outcome, Some(Outcome::Skipped { why }) if why.starts_with("follower"))
    );
    // The lease store is unreachable: the tick goes on, but nothing acts.
    *lease.0.lock().unwrap() = Err(());
    let r = c.tick(t0() + Duration::seconds(15)).await;
    assert!(r.lease_error.is_some() && !r.leader);
    assert!(cloud.calls().sets.is_empty());
    *lease.0.lock().unwrap() = Ok(true);
    c.tick(t0() + Duration::seconds(30)).await;
    assert_eq!(cloud.capacity("api"), 8);
}

#[tokio::test]
async fn a_failing_target_never_blocks_the_others() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    cloud.set_metric("workers", "backlog", Some(50.0));
    cloud.fail("workers", true, false, false);
    let mut c = controller(&cloud, &MemoryStore::default(), Options::default());
    let r = c.tick(t0()).await;
    assert!(r.result("workers").unwrap().error.is_some());
    assert_eq!(cloud.capacity("api"), 8);
    // Now setting fails for api; workers recovers and scales.
    cloud.fail("workers", false, false, false);
    cloud.fail("api", false, true, false);
    cloud.set_metric("api", "cpu", Some(100.0));
    let r = c.tick(t0() + Duration::seconds(15)).await;
    assert!(matches!(
        r.result("api").unwrap().outcome,
        Some(Outcome::Failed { .. })
    ));
    assert_eq!(cloud.capacity("workers"), 5);
    assert_eq!(cloud.capacity("api"), 8);
    // A failed action is not recorded as a scale event: the next tick tries again.
    cloud.fail("api", false, false, false);
    c.tick(t0() + Duration::seconds(30)).await;
    assert_eq!(cloud.capacity("api"), 16);
}

#[tokio::test]
async fn missing_metrics_never_scale_in() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 10);
    let mut c = controller(&cloud, &MemoryStore::default(), Options::default());
    for i in 0..40 {
        c.tick(t0() + Duration::seconds(15 * i)).await;
    }
    assert_eq!(cloud.capacity("api"), 10);
    assert!(cloud.calls().sets.iter().all(|(t, _)| t != "api"));
}

#[tokio::test]
async fn a_restart_keeps_the_stabilization_history() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 10);
    cloud.set_metric("api", "cpu", Some(50.0));
    let store = MemoryStore::default();
    let mut c = controller(&cloud, &store, Options::default());
    for i in 0..10 {
        c.tick(t0() + Duration::seconds(15 * i)).await;
    }
    // Load drops; the 5-minute scale-down window holds the capacity...
    cloud.set_metric("api", "cpu", Some(10.0));
    c.tick(t0() + Duration::seconds(150)).await;
    assert_eq!(cloud.capacity("api"), 10);
    drop(c);
    // ...and still holds it after a restart with the same store.
    let mut c = controller(&cloud, &store, Options::default());
    let r = c.tick(t0() + Duration::seconds(165)).await;
    assert_eq!(
        cloud.capacity("api"),
        10,
        "{}",
        r.result("api").unwrap().decision.as_ref().unwrap().reason()
    );
    // It scales in once the last recommendation of 10 (t = 135 s) is no longer strictly
    // inside the 300 s window: t = 435 s. (Had the history been lost, the restart would
    // have seeded a new window at 165 s and held until 465 s.)
    let mut at = 180;
    while cloud.capacity("api") == 10 && at < 600 {
        c.tick(t0() + Duration::seconds(at)).await;
        at += 15;
    }
    assert_eq!(cloud.capacity("api"), 2);
    assert_eq!(at - 15, 435, "scaled in at {}s", at - 15);
}

#[tokio::test]
async fn reload_keeps_histories_of_remaining_targets() {
    let cloud = FakeCloud::new();
    cloud.set_metric("api", "cpu", Some(50.0));
    let store = MemoryStore::default();
    let mut c = controller(&cloud, &store, Options::default());
    c.tick(t0()).await;
    assert!(c.history("api").is_some());
    let mut smaller = cfg("");
    smaller.targets.retain(|t| t.name == "api");
    c.reload(smaller);
    assert!(c.history("api").is_some());
    assert!(c.history("workers").is_none());
    let r = c.tick(t0() + Duration::seconds(15)).await;
    assert_eq!(r.results.len(), 1);
}

#[tokio::test]
async fn without_a_lease_table_a_target_removed_and_added_again_gets_its_history_back() {
    let cloud = FakeCloud::new();
    cloud.set_metric("api", "cpu", Some(50.0));
    let store = LocalStore::default();
    let mut c = Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        store.clone(),
        SoleLeader,
        Options::default(),
    );
    c.tick(t0()).await;
    c.tick(t0() + Duration::seconds(15)).await;
    let before = c.history("workers").cloned().expect("workers decided");
    assert!(before.first_seen.is_some());
    // Saving copies nothing: the controller's histories are the only ones.
    assert_eq!(store.retired(), 0);
    let mut smaller = cfg("");
    smaller.targets.retain(|t| t.name == "api");
    c.reload(smaller);
    assert!(c.history("workers").is_none());
    assert_eq!(store.retired(), 1);
    c.tick(t0() + Duration::seconds(30)).await;
    c.reload(cfg(""));
    c.tick(t0() + Duration::seconds(45)).await;
    let after = c.history("workers").expect("workers decided again");
    assert_eq!(
        after.first_seen, before.first_seen,
        "the old history came back"
    );
    assert!(after.recommendations.len() > before.recommendations.len());
    assert_eq!(store.retired(), 0);
}

#[tokio::test]
async fn predictive_targets_get_forecasts_from_history_and_scale_ahead() {
    let text = r#"
[[target]]
name = "shop"
kind = "ecs_service"
cluster = "shop"
service = "shop"
min = 1
max = 50
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
mode = "forecast_and_scale"
schedule_ahead = "10m"
"#;
    let cfg = config::from_str("t.toml", text).unwrap();
    let cloud = FakeCloud::new();
    // 14 days of a daily cycle: 200 rps at night, 2000 rps from 12:00 to 14:00 UTC.
    let now: DateTime<Utc> = "2026-11-27T11:52:00Z".parse().unwrap();
    let day_start = now - Duration::days(14);
    let points: Vec<(DateTime<Utc>, f64)> = (0..14 * 288)
        .map(|i| {
            let at = day_start + Duration::minutes(5 * i);
            let h = (at.timestamp() % 86_400) / 3600;
            (at, if (12..14).contains(&h) { 2000.0 } else { 200.0 })
        })
        .filter(|(at, _)| *at < now)
        .collect();
    cloud.set_history("shop", "rps", points);
    cloud.set_capacity_now("shop", 2);
    cloud.set_metric("shop", "rps", Some(200.0));
    let mut c = Controller::new(
        cfg,
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    );
    // First tick: no forecast yet; it is fetched at the end of the tick.
    c.tick(now).await;
    assert_eq!(cloud.capacity("shop"), 2);
    assert_eq!(cloud.calls().history_calls, 1);
    assert!(
        c.forecast_note("shop")
            .unwrap()
            .starts_with("seasonal-profile"),
        "{:?}",
        c.forecast_note("shop")
    );
    // 11:53: the 12:00 peak is within schedule_ahead (10 min): capacity goes up before the load.
    c.tick(now + Duration::minutes(1)).await;
    let cap = cloud.capacity("shop");
    // The forecaster smooths the daily profile, so a step to 2000 rps shows as ~1700 at
    // 12:00: well above the 2 units the night load needs.
    assert!(
        (15..=21).contains(&cap),
        "capacity {cap} ahead of a 2000 rps peak at 100 per unit"
    );
    // Not refreshed again within the hour.
    c.tick(now + Duration::minutes(2)).await;
    assert_eq!(cloud.calls().history_calls, 1);
}

/// 14 days of per-minute raw datapoints up to `now`, `per_minute(t)` each.
fn per_minute(now: DateTime<Utc>, f: impl Fn(DateTime<Utc>) -> f64) -> Vec<(DateTime<Utc>, f64)> {
    let start = now - Duration::days(14);
    (0..14 * 1440)
        .map(|i| start + Duration::minutes(i))
        .filter(|at| *at < now)
        .map(|at| (at, f(at)))
        .collect()
}

/// The forecast line of a target's decision in a tick.
fn forecast_of(r: &capstan::controller::TickReport, target: &str) -> capstan::policy::ForecastLine {
    r.result(target)
        .and_then(|r| r.decision.as_ref())
        .and_then(|d| d.explanation.forecast.clone())
        .unwrap_or_else(|| panic!("{target}: no forecast line"))
}

#[tokio::test]
async fn a_per_minute_sum_over_60_is_forecast_as_the_per_second_rate() {
    // The ALB's RequestCount, Sum per minute, divided by 60: requests per second. The
    // history must come back per second at every minute and be averaged into the
    // forecaster's 5-minute steps, not read as 5-minute totals (5x too high).
    let text = r#"
[[target]]
name = "web"
kind = "ecs_service"
cluster = "shop"
service = "web"
min = 1
max = 50
[[target.metric]]
name = "requests"
source = "cloudwatch"
namespace = "AWS/ApplicationELB"
metric_name = "RequestCount"
dimensions = { TargetGroup = "targetgroup/web/1", LoadBalancer = "app/shop/2" }
statistic = "Sum"
period = "60s"
[[target.metric]]
name = "rps"
source = "expression"
expression = "requests / 60"
[[target.policy]]
type = "predictive"
metric = "rps"
target_per_unit = 100
mode = "forecast_and_scale"
"#;
    let cfg = config::from_str("t.toml", text).unwrap_or_else(|d| panic!("{}", d[0]));
    let cloud = FakeCloud::new();
    let now: DateTime<Utc> = "2026-11-27T11:52:00Z".parse().unwrap();
    // 450 requests/s all along: 27,000 requests a minute.
    cloud.set_history("web", "requests", per_minute(now, |_| 27_000.0));
    cloud.set_metric("web", "rps", Some(450.0));
    cloud.set_capacity_now("web", 5);
    let mut c = Controller::new(
        cfg,
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    );
    c.tick(now).await;
    assert!(c
        .forecast_note("web")
        .is_some_and(|n| !n.contains("insufficient")));
    let r = c.tick(now + Duration::minutes(1)).await;
    let f = forecast_of(&r, "web");
    let load = f.predicted_load.expect("a forecast");
    assert!(
        (load - 450.0).abs() <= 450.0 * 0.03,
        "forecast {load} requests/s, the rate is 450"
    );
    assert_eq!(f.capacity, Some(5));
    assert_eq!(&*f.unit, "requests/s");
    assert!(f.note.contains("450 requests/s"), "{}", f.note);
    assert_eq!(
        cloud.capacity("web"),
        5,
        "no floor above what the load needs"
    );
}

#[tokio::test]
async fn sqs_workers_forecast_their_arrivals_and_a_missing_forecast_says_why() {
    let text = r#"
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 1
max = 50
[[target.metric]]
name = "queue"
source = "sqs"
queue = "https://sqs.us-east-1.amazonaws.com/1/orders"
[[target.policy]]
type = "target_tracking"
metric = "queue"
target_per_unit = 100
[[target.policy]]
type = "predictive"
metric = "queue"
target_per_unit = 5          # messages/s one worker gets through
mode = "forecast_and_scale"

[[target]]
name = "fresh"
kind = "ecs_service"
cluster = "shop"
service = "fresh"
min = 1
max = 50
[[target.metric]]
name = "queue"
source = "sqs"
queue = "fresh-orders"
[[target.policy]]
type = "predictive"
metric = "queue"
target_per_unit = 5
"#;
    let cfg = config::from_str("t.toml", text).unwrap_or_else(|d| panic!("{}", d[0]));
    let cloud = FakeCloud::new();
    let now: DateTime<Utc> = "2026-11-27T11:52:00Z".parse().unwrap();
    // NumberOfMessagesSent: 1,800 a minute, 30 messages/s.
    cloud.set_history("workers", "queue", per_minute(now, |_| 1800.0));
    let depth = capstan::policy::Sample::Queue {
        visible: 10.0,
        in_flight: 0.0,
        delayed: 0.0,
    };
    cloud.set_sample("workers", "queue", Some(depth));
    cloud.set_sample("fresh", "queue", Some(depth));
    let mut c = Controller::new(
        cfg,
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options::default(),
    );
    let first = c.tick(now).await;
    assert_eq!(forecast_of(&first, "workers").note, "no forecast yet");
    let r = c.tick(now + Duration::minutes(1)).await;
    let f = forecast_of(&r, "workers");
    let load = f.predicted_load.expect("a forecast of the arrivals");
    assert!(
        (load - 30.0).abs() <= 1.0,
        "forecast {load} messages/s, 30 arrive"
    );
    assert_eq!(&*f.unit, "messages sent/s");
    assert_eq!(
        cloud.capacity("workers"),
        6,
        "30 messages/s at 5 per worker"
    );
    // A queue without arrivals history: the decision, /v1/targets and the metrics say why.
    let f = forecast_of(&r, "fresh");
    assert!(f.predicted_load.is_none());
    assert!(
        f.note.starts_with("no forecast: insufficient history"),
        "{}",
        f.note
    );
    let d = r.result("fresh").unwrap().decision.clone().unwrap();
    assert!(
        d.reason().contains("no forecast: insufficient history"),
        "{}",
        d.reason()
    );
    let points: Vec<_> = capstan::telemetry::points(&r).collect();
    let available = |t: &str| {
        points
            .iter()
            .find(|p| p.target == t && p.name == "ForecastAvailable")
            .map(|p| p.value)
    };
    assert_eq!(available("workers"), Some(1.0));
    assert_eq!(available("fresh"), Some(0.0));
}

#[tokio::test]
async fn followers_never_write_histories_and_a_new_leader_reads_them() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    let store = MemoryStore::default();
    let lease = ScriptedLease(Arc::new(Mutex::new(Ok(false))));
    let mut follower = Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        store.clone(),
        lease.clone(),
        Options::default(),
    );
    follower.tick(t0()).await;
    use capstan::controller::state::StateStore;
    assert!(
        store.load(&["api".into()]).await.unwrap().is_empty(),
        "a follower saved a history"
    );
    // The leader acts and saves; the follower, promoted, reads the leader's history.
    let mut leader = controller(&cloud, &store, Options::default());
    leader.tick(t0() + Duration::seconds(15)).await;
    assert_eq!(cloud.capacity("api"), 8);
    let saved = store.load(&["api".into()]).await.unwrap();
    assert_eq!(saved["api"].scale_ups.len(), 1);
    *lease.0.lock().unwrap() = Ok(true);
    follower.tick(t0() + Duration::seconds(30)).await;
    assert_eq!(
        follower.history("api").unwrap().scale_ups.len(),
        1,
        "the promoted replica uses the stored history"
    );
}

#[tokio::test]
async fn aws_side_scaling_is_respected_and_taken_over_only_by_the_acting_leader() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    cloud.set_metric("workers", "backlog", Some(50.0));
    cloud.add_conflict(
        "api",
        "Application Auto Scaling policy cpu (TargetTrackingScaling)",
    );
    // Without takeover the target is dropped.
    let mut c = controller(&cloud, &MemoryStore::default(), Options::default());
    let r = c.tick(t0()).await;
    assert!(r.result("api").is_none());
    assert!(r.result("workers").is_some());
    assert!(cloud.calls().take_overs.is_empty());
    // With takeover: a follower and a dry run never suspend AWS's scaling nor act.
    let mut with_takeover = cfg("");
    with_takeover.targets[0].takeover = true;
    let lease = ScriptedLease(Arc::new(Mutex::new(Ok(false))));
    let mut f = Controller::new(
        with_takeover.clone(),
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        lease.clone(),
        Options::default(),
    );
    f.tick(t0()).await;
    let checks = cloud.calls().conflict_checks;
    f.tick(t0() + Duration::seconds(5)).await;
    assert_eq!(
        cloud.calls().conflict_checks,
        checks,
        "a follower does not check again every tick"
    );
    let mut dry = Controller::new(
        with_takeover.clone(),
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options {
            dry_run: true,
            ..Options::default()
        },
    );
    dry.tick(t0()).await;
    assert!(cloud.calls().take_overs.is_empty());
    assert!(cloud.calls().sets.iter().all(|(t, _)| t != "api"));
    // Once the replica leads, it takes over, then manages the target.
    *lease.0.lock().unwrap() = Ok(true);
    f.tick(t0() + Duration::seconds(15)).await;
    assert_eq!(cloud.calls().take_overs, vec!["api".to_string()]);
    assert_eq!(cloud.capacity("api"), 8);
}

#[tokio::test]
async fn a_leader_whose_lease_is_about_to_expire_does_not_act() {
    /// A lease that says "leader" but expires a second from now (by this process's
    /// monotonic clock; its wall-clock expiry, for display, says an hour).
    #[derive(Clone)]
    struct Expiring;
    impl Lease for Expiring {
        async fn acquire_or_renew(&self, now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
            Ok(LeaseState {
                leader: true,
                holder: None,
                fencing: 1,
                expires: Some(now + Duration::hours(1)),
                valid_until: Some(std::time::Instant::now() + std::time::Duration::from_secs(1)),
            })
        }
        async fn release(&self) -> Result<(), AwsError> {
            Ok(())
        }
    }
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(100.0));
    let mut c = Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        Expiring,
        Options::default(),
    );
    let r = c.tick(t0()).await;
    assert!(
        matches!(&r.result("api").unwrap().outcome, Some(Outcome::Skipped { why }) if why.contains("lease")),
        "{:?}",
        r.result("api")
    );
    assert!(cloud.calls().sets.is_empty());
}

#[tokio::test]
async fn a_metric_with_poll_every_is_read_once_a_minute_and_reused_in_between() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(10.0));
    let mut config = cfg("");
    config.targets[0].metrics[0].poll_every_secs = Some(60);
    let mut c = on_fake(&cloud, config);
    let reads = || cloud.calls().read_requests;
    // Tick 0 reads both metrics; ticks 1-3 only the queue (cpu reused).
    let r = c.tick(t0()).await;
    assert_eq!(reads(), 2);
    assert_eq!(
        r.readings
            .iter()
            .filter(|x| x.reused_read_at.is_some())
            .count(),
        0
    );
    // The load doubles between reads: not seen until cpu is read again.
    cloud.set_metric("api", "cpu", Some(100.0));
    for k in 1..4 {
        let r = c.tick(t0() + Duration::seconds(15 * k)).await;
        assert_eq!(reads(), 2 + k as u64, "tick {k}: the queue only");
        let cpu = r.readings.iter().find(|x| &*x.metric == "cpu").unwrap();
        assert_eq!(cpu.reused_read_at, Some(t0()));
        assert_eq!(cpu.at, Some(t0()), "reused with its own timestamp");
        let d = r.result("api").unwrap().decision.as_ref().unwrap();
        assert_eq!(d.explanation.metrics[0].value, Some(50.0));
        assert_eq!(d.explanation.metrics[0].read_secs_ago, Some(15 * k as u64));
        assert_eq!(cloud.capacity("api"), 4);
    }
    // A minute after the first read cpu is read again and the step acted on.
    let r = c.tick(t0() + Duration::seconds(60)).await;
    assert_eq!(reads(), 2 + 3 + 2);
    let d = r.result("api").unwrap().decision.as_ref().unwrap();
    assert_eq!(d.explanation.metrics[0].read_secs_ago, None);
    assert_eq!(cloud.capacity("api"), 8);
    // The read of tick 8 fails: cpu is read again on every next tick (not a minute later),
    // and is missing meanwhile, which never scales in.
    cloud.set_metric("api", "cpu", Some(10.0));
    cloud.fail("api", false, false, true);
    for k in 5..8 {
        // Ticks 5-7 reuse the read of tick 4.
        let before = reads();
        let r = c.tick(t0() + Duration::seconds(15 * k)).await;
        assert_eq!(reads() - before, 1, "tick {k}: cpu reused");
        let cpu = r.readings.iter().find(|x| &*x.metric == "cpu").unwrap();
        assert_eq!(cpu.sample, Some(capstan::policy::Sample::Value(100.0)));
    }
    let held = cloud.capacity("api");
    for k in 8..11 {
        let before = reads();
        let r = c.tick(t0() + Duration::seconds(15 * k)).await;
        assert_eq!(
            reads() - before,
            2,
            "tick {k}: cpu read, and again after a failure"
        );
        let cpu = r.readings.iter().find(|x| &*x.metric == "cpu").unwrap();
        assert_eq!(cpu.sample, None);
        assert_eq!(cpu.reused_read_at, None);
    }
    assert_eq!(
        cloud.capacity("api"),
        held,
        "never scales in on missing data"
    );
}

/// With `settled_refresh`, a settled target's capacity is reused until it is due (first
/// at a point of the minute its name hashes to, then a minute after each read); a target
/// whose decision would change it is read again before acting, within the same tick, and
/// decided on the fresh reading; a target in transition is read every tick; an outside
/// change is seen once the reading is due.
#[tokio::test]
async fn settled_targets_reuse_their_capacity_and_are_read_again_before_acting() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(10.0));
    // A worker still starting: in transition, never reused.
    cloud.set_capacity_now("workers", 1);
    cloud.set_ready("workers", 0);
    let mut c = on_fake(&cloud, cfg(r#"settled_refresh = "1m""#));
    let observed = || cloud.calls().observed_targets;
    let at = |k: i64| t0() + Duration::seconds(15 * k);
    let api_decision =
        |r: &capstan::controller::TickReport| r.result("api").unwrap().decision.clone().unwrap();
    // When api, first cached at some tick, is next read: 1 to 60 s later, by its name.
    let first_due = 1 + i64::from(capstan::config::Shard::of("api", 60));
    let due_tick = |cached_at: i64| (15 * cached_at + first_due + 14) / 15;

    c.tick(at(0)).await;
    assert_eq!(observed(), 2, "the first tick reads every target");
    // The name hash (pinned, stable across releases) puts api's first read again at 48 s:
    // ticks 1 and 2 reuse the reading of tick 0.
    assert_eq!(first_due, 48);
    let r = c.tick(at(1)).await;
    assert_eq!(observed(), 3, "tick 1: only the worker in transition");
    let d = api_decision(&r);
    assert_eq!(d.explanation.capacity_read_secs_ago, Some(15));
    assert!(
        d.reason().contains("capacity 4 read 15s ago"),
        "{}",
        d.reason()
    );

    // Someone else sets 6 and the load doubles in the same tick: decided on the reused 4,
    // read again, decided and acted on from the 6 it runs now.
    let before = observed();
    cloud.set_capacity_now("api", 6);
    cloud.set_metric("api", "cpu", Some(100.0));
    let r = c.tick(at(2)).await;
    assert_eq!(
        observed() - before,
        2,
        "tick 2: the worker, and api before acting"
    );
    assert_eq!(cloud.calls().sets, vec![("api".to_string(), 12)]);
    let d = api_decision(&r);
    assert_eq!((d.current, d.desired), (6, 12));
    assert_eq!(d.explanation.capacity_read_secs_ago, None);
    cloud.set_metric("api", "cpu", Some(50.0));
    // Changed: read again on the next tick (cached anew), then reused until due.
    let before = observed();
    c.tick(at(3)).await;
    assert_eq!(observed() - before, 2);

    // Someone else sets 16: not seen while the reading of tick 3 is reused...
    cloud.set_capacity_now("api", 16);
    let seen = due_tick(3);
    for k in 4..seen {
        let before = observed();
        let r = c.tick(at(k)).await;
        assert_eq!(observed() - before, 1, "tick {k}: the worker only");
        assert_eq!(api_decision(&r).current, 12);
        assert_eq!(
            api_decision(&r).explanation.capacity_read_secs_ago,
            Some(15 * (k as u64 - 3))
        );
    }
    // ...and read with the metrics once due, never older than the minute.
    let before = observed();
    let r = c.tick(at(seen)).await;
    assert_eq!(observed() - before, 2, "tick {seen}: due again");
    assert_eq!(api_decision(&r).current, 16);
    assert_eq!(api_decision(&r).explanation.capacity_read_secs_ago, None);
    // From then on a minute after each read.
    for k in seen + 1..seen + 4 {
        let before = observed();
        let r = c.tick(at(k)).await;
        assert_eq!(observed() - before, 1, "tick {k}");
        assert_eq!(api_decision(&r).current, 16);
    }
    let before = observed();
    c.tick(at(seen + 4)).await;
    assert_eq!(observed() - before, 2, "a minute after the last read");
    assert_eq!(
        cloud.calls().sets,
        vec![("api".to_string(), 12)],
        "never acted on a reused capacity"
    );

    // A read again that fails: no action, an error for the target, the reuse dropped.
    cloud.set_metric("api", "cpu", Some(100.0));
    cloud.fail("api", true, false, false);
    let r = c.tick(at(seen + 5)).await;
    let api = r.result("api").unwrap();
    assert!(api.decision.is_none() && api.error.is_some(), "{api:?}");
    cloud.fail("api", false, false, false);
    let before = observed();
    let r = c.tick(at(seen + 6)).await;
    assert_eq!(observed() - before, 2, "api read with the metrics again");
    assert_eq!(api_decision(&r).explanation.capacity_read_secs_ago, None);
    assert_eq!(cloud.calls().sets.len(), 2, "{:?}", cloud.calls().sets);
}

/// A reading that shows a block (a deployment, a drain) is never reused, and a reload
/// drops every reused reading.
#[tokio::test]
async fn blocked_targets_are_read_every_tick_and_a_reload_reads_all_again() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(10.0));
    cloud.block_scale_in("workers", Some("deployment in progress"));
    let mut c = on_fake(&cloud, cfg(r#"settled_refresh = "10m""#));
    let observed = || cloud.calls().observed_targets;
    c.tick(t0()).await;
    assert_eq!(observed(), 2);
    for k in 1..4 {
        c.tick(t0() + Duration::seconds(15 * k)).await;
        assert_eq!(
            observed(),
            2 + k as u64,
            "tick {k}: only the blocked worker"
        );
    }
    c.reload(cfg(r#"settled_refresh = "10m""#));
    c.tick(t0() + Duration::seconds(60)).await;
    assert_eq!(observed(), 7, "after a reload every target is read");
}

/// Without `settled_refresh` (the default) every target is read every tick.
#[tokio::test]
async fn by_default_every_target_is_read_every_tick() {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    cloud.set_metric("workers", "backlog", Some(10.0));
    let store = MemoryStore::default();
    let mut c = controller(&cloud, &store, Options::default());
    for k in 0..5 {
        let r = c.tick(t0() + Duration::seconds(15 * k)).await;
        assert_eq!(cloud.calls().observed_targets, 2 * (k as u64 + 1));
        let d = r.result("api").unwrap().decision.clone().unwrap();
        assert_eq!(d.explanation.capacity_read_secs_ago, None);
    }
}
