//! Never act twice, over the in-memory fake cloud: a change whose answer was lost counts
//! for the rate limits until a read of the resource says it did not happen; a process
//! killed between acting and recording does not repeat the step on restart; a dry run
//! never touches the lease or the stored histories.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use capstan::aws::AwsError;
use capstan::config::{self, Config};
use capstan::controller::lease::{Lease, LeaseState, SoleLeader};
use capstan::controller::state::{MemoryStore, StateStore};
use capstan::controller::{Controller, Options, Outcome};
use capstan::fake::{FakeCloud, LostAnswer};
use capstan::policy::PendingState;
use chrono::{DateTime, Duration, Utc};

/// One ECS service, CPU target 50, at most +2 tasks a minute.
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
[target.behavior.scale_up]
policies = [{{ type = "pods", value = 2, period = "1m" }}]
"#
    );
    config::from_str("test.toml", &text).unwrap_or_else(|d| panic!("{}", d[0]))
}

fn t0() -> DateTime<Utc> {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

fn controller<L: Lease>(
    cloud: &FakeCloud,
    store: &MemoryStore,
    config: Config,
    lease: L,
) -> Controller<FakeCloud, FakeCloud, MemoryStore, L> {
    Controller::new(
        config,
        cloud.clone(),
        cloud.clone(),
        store.clone(),
        lease,
        Options::default(),
    )
}

/// A loaded service at 2 tasks: it wants far more than the +2 a minute it may get.
fn loaded() -> FakeCloud {
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 2);
    cloud.set_metric("api", "cpu", Some(200.0));
    cloud
}

/// The capacities set, in order.
fn sets(cloud: &FakeCloud) -> Vec<u32> {
    cloud.calls().sets.iter().map(|(_, v)| *v).collect()
}

#[tokio::test]
async fn an_applied_change_whose_answer_was_lost_counts_for_the_rate_limit() {
    let cloud = loaded();
    let store = MemoryStore::default();
    let mut c = controller(&cloud, &store, cfg(""), SoleLeader);
    // 2 -> 4 is made, but the answer is lost (a reset after the request was sent).
    cloud.lose_answers("api", Some(LostAnswer::Error));
    let r = c.tick(t0()).await;
    let Some(Outcome::Failed { error }) = &r.result("api").unwrap().outcome else {
        panic!("{:?}", r.result("api"));
    };
    assert!(error.may_have_applied(), "{error}");
    assert_eq!(cloud.capacity("api"), 4);
    let saved = store.load(&["api".into()]).await.unwrap();
    // The next ticks read 4: the change is confirmed and the minute's 2 tasks are used.
    cloud.lose_answers("api", None);
    for s in [15, 30, 45] {
        let r = c.tick(at(s)).await;
        assert_eq!(
            cloud.capacity("api"),
            4,
            "at {s}s: {}",
            r.result("api").unwrap().decision.as_ref().unwrap().reason()
        );
    }
    assert!(c.history("api").unwrap().pending.is_none());
    assert_eq!(sets(&cloud), vec![4]);
    // A minute after the first change, the next 2.
    c.tick(at(60)).await;
    c.tick(at(75)).await;
    assert_eq!(sets(&cloud), vec![4, 6]);
    // It had been stored as a change in doubt, counted.
    let pending = saved["api"].pending.expect("the change in doubt is stored");
    assert_eq!((pending.from, pending.to), (2, 4));
    assert_eq!(pending.state, PendingState::Ambiguous);
    assert_eq!(saved["api"].scale_ups.len(), 1);
}

#[tokio::test]
async fn an_ambiguous_change_that_did_not_happen_is_made_on_the_next_tick() {
    let cloud = loaded();
    let mut c = controller(&cloud, &MemoryStore::default(), cfg(""), SoleLeader);
    // The call fails transiently before AWS took it (the fake's injected failure).
    cloud.fail("api", false, true, false);
    let r = c.tick(t0()).await;
    assert!(matches!(
        &r.result("api").unwrap().outcome,
        Some(Outcome::Failed { error }) if error.may_have_applied()
    ));
    assert_eq!(cloud.capacity("api"), 2);
    assert!(c.history("api").unwrap().pending.is_some());
    // The next tick reads 2: the change did not happen, it no longer counts, and is made.
    cloud.fail("api", false, false, false);
    c.tick(at(15)).await;
    assert_eq!(cloud.capacity("api"), 4);
    assert!(c.history("api").unwrap().pending.is_none());
    assert_eq!(c.history("api").unwrap().scale_ups.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_process_killed_after_the_change_and_before_its_answer_does_not_repeat_it() {
    let cloud = loaded();
    let store = MemoryStore::default();
    // The change is made and the process dies before it hears back (the tick is dropped
    // mid-call, as by kill -9).
    cloud.lose_answers("api", Some(LostAnswer::Hang));
    let mut first = controller(&cloud, &store, cfg(""), SoleLeader);
    let killed = tokio::time::timeout(std::time::Duration::from_secs(5), first.tick(t0())).await;
    assert!(killed.is_err(), "the tick was to hang in the call");
    drop(first);
    assert_eq!(cloud.capacity("api"), 4);
    let saved = store.load(&["api".into()]).await.unwrap();
    cloud.lose_answers("api", None);
    // The restarted process reads 4, counts the change and waits out the minute.
    let mut second = controller(&cloud, &store, cfg(""), SoleLeader);
    for s in [5, 20, 35, 50] {
        let r = second.tick(at(s)).await;
        assert_eq!(
            cloud.capacity("api"),
            4,
            "at {s}s: {}",
            r.result("api").unwrap().decision.as_ref().unwrap().reason()
        );
    }
    second.tick(at(65)).await;
    assert_eq!(sets(&cloud), vec![4, 6]);
    // What was written ahead had survived the kill.
    let pending = saved
        .get("api")
        .and_then(|h| h.pending)
        .expect("the intent is stored");
    assert_eq!(pending.state, PendingState::Intended);
}

#[tokio::test(start_paused = true)]
async fn a_process_killed_after_writing_ahead_but_before_the_call_makes_it_after_restart() {
    let cloud = loaded();
    let store = MemoryStore::default();
    // Every fake call takes 10 s: the tick is dropped while the change's call waits, so
    // the intent is stored but AWS never got the call.
    let mut slow = cloud.clone();
    slow.latency = std::time::Duration::from_secs(10);
    let mut first = Controller::new(
        cfg(""),
        slow.clone(),
        slow,
        store.clone(),
        SoleLeader,
        Options::default(),
    );
    let killed = tokio::time::timeout(std::time::Duration::from_secs(15), first.tick(t0())).await;
    assert!(killed.is_err());
    drop(first);
    assert_eq!(cloud.capacity("api"), 2);
    assert!(store.load(&["api".into()]).await.unwrap()["api"]
        .pending
        .is_some());
    // The restart reads 2: the change did not happen, so it is made now.
    let mut second = controller(&cloud, &store, cfg(""), SoleLeader);
    second.tick(at(20)).await;
    assert_eq!(sets(&cloud), vec![4]);
    let h = second.history("api").unwrap();
    assert!(h.pending.is_none());
    assert_eq!(h.scale_ups.len(), 1, "one change, counted once");
}

/// A store whose saves fail: the change's intent cannot be written ahead.
#[derive(Clone, Default)]
struct BrokenStore;

impl StateStore for BrokenStore {
    async fn load(
        &self,
        _targets: &[String],
    ) -> Result<std::collections::HashMap<String, capstan::policy::History>, AwsError> {
        Ok(Default::default())
    }
    async fn save(&self, target: &str, _h: &capstan::policy::History) -> Result<(), AwsError> {
        Err(AwsError::new(
            capstan::aws::ErrorClass::Transient,
            "dynamodb",
            "PutItem",
            target,
            "unreachable",
        ))
    }
}

#[tokio::test]
async fn a_change_whose_intent_cannot_be_stored_is_not_made() {
    let cloud = loaded();
    let mut c = Controller::new(
        cfg(""),
        cloud.clone(),
        cloud.clone(),
        BrokenStore,
        SoleLeader,
        Options::default(),
    );
    let r = c.tick(t0()).await;
    assert!(
        matches!(&r.result("api").unwrap().outcome, Some(Outcome::Skipped { why }) if why.contains("recorded")),
        "{:?}",
        r.result("api")
    );
    assert!(sets(&cloud).is_empty());
    assert!(!r.store_errors.is_empty());
    let h = c.history("api").unwrap();
    assert!(h.pending.is_none() && h.scale_ups.is_empty());
}

/// A lease that counts how it is used.
#[derive(Clone, Default)]
struct CountingLease {
    takes: Arc<AtomicU32>,
    releases: Arc<AtomicU32>,
    peeks: Arc<AtomicU32>,
}

impl Lease for CountingLease {
    async fn acquire_or_renew(&self, _now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        self.takes.fetch_add(1, Ordering::SeqCst);
        Ok(LeaseState {
            leader: true,
            holder: Some("me".into()),
            fencing: 4,
            ..LeaseState::default()
        })
    }
    async fn release(&self) -> Result<(), AwsError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn peek(&self) -> Result<LeaseState, AwsError> {
        self.peeks.fetch_add(1, Ordering::SeqCst);
        Ok(LeaseState {
            holder: Some("production".into()),
            fencing: 9,
            ..LeaseState::default()
        })
    }
}

#[tokio::test]
async fn a_dry_run_never_takes_the_lease_nor_writes_histories() {
    let cloud = loaded();
    let store = MemoryStore::default();
    let lease = CountingLease::default();
    let mut c = controller(&cloud, &store, cfg("dry_run = true"), lease.clone());
    for i in 0..4 {
        let r = c.tick(at(15 * i)).await;
        assert!(!r.leader, "a dry run beside a lease is never its leader");
        assert!(
            matches!(&r.result("api").unwrap().outcome, Some(Outcome::Skipped { why }) if why == "dry run")
        );
    }
    assert_eq!(lease.takes.load(Ordering::SeqCst), 0, "the lease was taken");
    assert_eq!(lease.peeks.load(Ordering::SeqCst), 4);
    assert_eq!(
        c.lease_state().and_then(|l| l.holder.as_deref()),
        Some("production"),
        "it shows who holds the lease"
    );
    assert!(
        store.load(&["api".into()]).await.unwrap().is_empty(),
        "a dry run wrote a history"
    );
    assert!(sets(&cloud).is_empty());
    // It still keeps its own history in memory, to explain what it would do.
    assert!(c.history("api").is_some());

    // A leader whose reload turns the dry run on lets go of the lease.
    let mut c = controller(&cloud, &store, cfg(""), lease.clone());
    c.tick(at(60)).await;
    assert_eq!(lease.takes.load(Ordering::SeqCst), 1);
    c.reload(cfg("dry_run = true"));
    c.tick(at(75)).await;
    c.tick(at(90)).await;
    assert_eq!(lease.takes.load(Ordering::SeqCst), 1);
    assert_eq!(lease.releases.load(Ordering::SeqCst), 1);
}
