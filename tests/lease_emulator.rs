//! The DynamoDB lease and history store against the emulator: one leader at a time,
//! fencing increases on every new holder, a lease left unrenewed for its duration hands
//! over whatever the replicas' wall clocks say, a dry run never touches the table, and
//! histories survive a restart of the process that wrote them.

mod common;

use capstan::controller::lease::{DynamoLease, Lease};
use capstan::controller::state::{create_table, DynamoStore, StateStore};
use capstan::policy::{History, Recommendation};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};

/// The lease duration of these tests: short, so a take-over is seconds away.
const D: StdDuration = StdDuration::from_millis(1500);

fn lease(sdk: &aws_config::SdkConfig, table: &str, owner: &str) -> DynamoLease {
    DynamoLease::new(sdk, table, "shop", owner, 30).with_duration(D)
}

/// A replica's wall clock, `skew_ms` off the true time.
fn clock(skew_ms: i64) -> chrono::DateTime<Utc> {
    Utc::now() + Duration::milliseconds(skew_ms)
}

#[tokio::test]
async fn one_leader_at_a_time_with_fencing_and_take_over() {
    let sdk = common::sdk().await;
    let table = common::unique("capstan-lease");
    create_table(&sdk, &table).await.unwrap();
    create_table(&sdk, &table)
        .await
        .expect("creating it again is fine");
    let a = lease(&sdk, &table, "replica-a");
    let b = lease(&sdk, &table, "replica-b");
    let c = lease(&sdk, &table, "replica-c");
    let sa = a.acquire_or_renew(Utc::now()).await.unwrap();
    assert!(sa.leader);
    assert_eq!(sa.fencing, 1);
    // The others are followers while the lease is renewed, and see who holds it, even
    // with clocks 41 s ahead (past the record's wall-clock expiry).
    for r in [&b, &c] {
        let s = r.acquire_or_renew(clock(41_000)).await.unwrap();
        assert!(!s.leader);
        assert_eq!(s.holder.as_deref(), Some("replica-a"));
    }
    // The leader renews with the same fencing token, and holds it for the lease duration
    // from the renewal's sending, on its own monotonic clock.
    let before = Instant::now();
    let sa = a.acquire_or_renew(Utc::now()).await.unwrap();
    assert!(sa.leader && sa.fencing == 1);
    let held_until = sa.valid_until.expect("a holder knows until when");
    assert!(held_until >= before + D && held_until <= Instant::now() + D);
    // The leader stops renewing (crash, partition): exactly one other takes over, and not
    // before the old holder's lease ran out on the shared monotonic clock of this process.
    let (mut winner, mut took_at) = (None, None);
    while winner.is_none() {
        for (r, skew) in [(&b, 41_000), (&c, -12_000)] {
            let s = r.acquire_or_renew(clock(skew)).await.unwrap();
            if s.leader {
                took_at = Some(Instant::now());
                winner = Some(s);
                break;
            }
        }
        assert!(before.elapsed() < 4 * D, "no take-over");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let winner = winner.unwrap();
    assert!(
        took_at.unwrap() >= held_until,
        "taken {:?} before the holder's lease ended",
        held_until - took_at.unwrap()
    );
    assert_eq!(winner.fencing, 2);
    // The other one follows the new holder.
    let loser = if winner.holder.as_deref() == Some("replica-b") {
        &c
    } else {
        &b
    };
    assert!(!loser.acquire_or_renew(Utc::now()).await.unwrap().leader);
    // The old leader comes back: it has lost the lease and must not act.
    let sa = a.acquire_or_renew(Utc::now()).await.unwrap();
    assert!(!sa.leader);
    assert_eq!(sa.holder, winner.holder);
    // Releasing hands over at once.
    let holder = if winner.holder.as_deref() == Some("replica-b") {
        &b
    } else {
        &c
    };
    holder.release().await.unwrap();
    let sa = a.acquire_or_renew(Utc::now()).await.unwrap();
    assert!(sa.leader);
    assert_eq!(sa.fencing, 3);
}

/// One replica holds and renews the lease every D/3 for 4 D while two others, their
/// clocks `skews` off, try to take it: none ever does. Then the holder stops and one of
/// them takes over, after the holder's lease ran out. Returns the take-over delay.
async fn holder_against_skewed_takers(holder_skew: i64, skews: [i64; 2]) -> StdDuration {
    let sdk = common::sdk().await;
    let table = common::unique("capstan-skew");
    create_table(&sdk, &table).await.unwrap();
    let holder = lease(&sdk, &table, "holder");
    let takers = [
        lease(&sdk, &table, "taker-1"),
        lease(&sdk, &table, "taker-2"),
    ];
    let mut held_until = None;
    let start = Instant::now();
    while start.elapsed() < 4 * D {
        let s = holder.acquire_or_renew(clock(holder_skew)).await.unwrap();
        assert!(s.leader, "the renewing holder lost its lease");
        held_until = s.valid_until;
        for (t, skew) in takers.iter().zip(skews) {
            let s = t.acquire_or_renew(clock(skew)).await.unwrap();
            assert!(
                !s.leader,
                "a replica {skew} ms off took the lease while its holder ({holder_skew} ms off) renewed it"
            );
        }
        tokio::time::sleep(D / 3).await;
    }
    let held_until = held_until.unwrap();
    let stopped = Instant::now();
    loop {
        for (t, skew) in takers.iter().zip(skews) {
            if t.acquire_or_renew(clock(skew)).await.unwrap().leader {
                let now = Instant::now();
                assert!(
                    now >= held_until,
                    "taken while the holder still held it for {:?}",
                    held_until - now
                );
                return now - stopped;
            }
        }
        assert!(stopped.elapsed() < 4 * D, "no take-over");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn skewed_clocks_never_make_two_leaders() {
    // Takers 12 s ahead and 12 s behind the holder, then a holder 12 s ahead and 12 s
    // behind its takers.
    let a = holder_against_skewed_takers(0, [12_000, -12_000]).await;
    let b = holder_against_skewed_takers(12_000, [0, -12_000]).await;
    let c = holder_against_skewed_takers(-12_000, [0, 12_000]).await;
    for took in [a, b, c] {
        assert!(took <= 3 * D, "take-over took {took:?}");
    }
}

#[tokio::test]
async fn histories_survive_in_dynamodb() {
    let sdk = common::sdk().await;
    let table = common::unique("capstan-state");
    create_table(&sdk, &table).await.unwrap();
    let now = Utc::now();
    let h = History {
        recommendations: vec![Recommendation {
            at: now.into(),
            capacity: 7,
        }],
        first_seen: Some(now.into()),
        consecutive_failures: 2,
        ..History::default()
    };
    DynamoStore::new(&sdk, &table, "shop")
        .save("api", &h)
        .await
        .unwrap();
    // A new store (a restarted process) reads it back; other namespaces do not see it.
    let got = DynamoStore::new(&sdk, &table, "shop")
        .load(&["api".into(), "other".into()])
        .await
        .unwrap();
    assert_eq!(got.get("api"), Some(&h));
    assert!(!got.contains_key("other"));
    let other = DynamoStore::new(&sdk, &table, "staging")
        .load(&["api".into()])
        .await
        .unwrap();
    assert!(other.is_empty());
}

#[tokio::test]
async fn a_holder_that_lost_track_of_its_lease_renews_it_instead_of_waiting() {
    let sdk = common::sdk().await;
    let table = common::unique("capstan-lease");
    create_table(&sdk, &table).await.unwrap();
    let now = Utc::now();
    let a = DynamoLease::new(&sdk, &table, "shop", "replica-a", 30);
    assert!(a.acquire_or_renew(now).await.unwrap().leader);
    // The same owner in a fresh handle (its memory of holding the lease is gone, as after
    // a renewal whose answer was lost): still the leader, same fencing.
    let a2 = DynamoLease::new(&sdk, &table, "shop", "replica-a", 30);
    let s = a2
        .acquire_or_renew(now + Duration::seconds(5))
        .await
        .unwrap();
    assert!(s.leader);
    assert_eq!(s.fencing, 1);
}

#[tokio::test]
async fn a_dry_run_beside_production_never_writes_the_lease_or_histories() {
    use capstan::controller::{Controller, Options};
    use capstan::fake::FakeCloud;
    let sdk = common::sdk().await;
    let table = common::unique("capstan-dry");
    create_table(&sdk, &table).await.unwrap();
    let config = capstan::config::from_str(
        "dry.toml",
        r#"
[[target]]
name = "workers"
kind = "ecs_service"
cluster = "shop"
service = "workers"
min = 2
max = 10
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
"#,
    )
    .unwrap_or_else(|d| panic!("{}", d[0]));
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("workers", 2);
    cloud.set_metric("workers", "cpu", Some(250.0));
    let mut dry = Controller::new(
        config,
        cloud.clone(),
        cloud.clone(),
        DynamoStore::new(&sdk, &table, "shop"),
        lease(&sdk, &table, "dry-run"),
        Options {
            dry_run: true,
            ..Options::default()
        },
    );
    for _ in 0..3 {
        let r = dry.tick(Utc::now()).await;
        assert!(!r.leader);
        assert!(r.lease_error.is_none() && r.store_errors.is_empty());
        tokio::time::sleep(D / 2).await;
    }
    // Nothing in the table: no lease, no history; production takes the lease at once.
    let stored = DynamoStore::new(&sdk, &table, "shop")
        .load(&["workers".into()])
        .await
        .unwrap();
    assert!(stored.is_empty(), "a dry run stored {stored:?}");
    let production = lease(&sdk, &table, "production");
    let s = production.acquire_or_renew(Utc::now()).await.unwrap();
    assert!(s.leader && s.fencing == 1, "{s:?}");
    // The dry run shows who leads, and still never acts.
    let r = dry.tick(Utc::now()).await;
    assert!(!r.leader);
    assert_eq!(
        dry.lease_state().and_then(|l| l.holder.as_deref()),
        Some("production")
    );
    assert!(cloud.calls().sets.is_empty());
}
