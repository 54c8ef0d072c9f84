//! The DynamoDB lease and history store against the emulator: one leader at a time,
//! fencing increases on every new holder, expiry hands over, and histories survive a
//! restart of the process that wrote them.

mod common;

use capstan::controller::lease::{DynamoLease, Lease};
use capstan::controller::state::{create_table, DynamoStore, StateStore};
use capstan::policy::{History, Recommendation};
use chrono::{Duration, Utc};

#[tokio::test]
async fn one_leader_at_a_time_with_fencing_and_expiry() {
    let sdk = common::sdk().await;
    let table = common::unique("capstan-lease");
    create_table(&sdk, &table).await.unwrap();
    create_table(&sdk, &table)
        .await
        .expect("creating it again is fine");
    let a = DynamoLease::new(&sdk, &table, "shop", "replica-a", 30);
    let b = DynamoLease::new(&sdk, &table, "shop", "replica-b", 30);
    let c = DynamoLease::new(&sdk, &table, "shop", "replica-c", 30);
    let now = Utc::now();
    let sa = a.acquire_or_renew(now).await.unwrap();
    assert!(sa.leader);
    assert_eq!(sa.fencing, 1);
    // The others are followers while the lease lives, and see who holds it.
    for r in [&b, &c] {
        let s = r
            .acquire_or_renew(now + Duration::seconds(5))
            .await
            .unwrap();
        assert!(!s.leader);
        assert_eq!(s.holder.as_deref(), Some("replica-a"));
    }
    // The leader renews with the same fencing token.
    let sa = a
        .acquire_or_renew(now + Duration::seconds(10))
        .await
        .unwrap();
    assert!(sa.leader && sa.fencing == 1);
    // The leader stops renewing (crash, partition): after expiry exactly one other wins.
    let later = now + Duration::seconds(41);
    let sb = b.acquire_or_renew(later).await.unwrap();
    let sc = c.acquire_or_renew(later).await.unwrap();
    assert!(
        sb.leader ^ sc.leader,
        "exactly one new leader: {sb:?} {sc:?}"
    );
    let winner = if sb.leader { sb } else { sc };
    assert_eq!(winner.fencing, 2);
    // The old leader comes back: it has lost the lease and must not act.
    let sa = a
        .acquire_or_renew(later + Duration::seconds(1))
        .await
        .unwrap();
    assert!(!sa.leader);
    // Releasing hands over at once.
    let holder = if winner.holder.as_deref() == Some("replica-b") {
        &b
    } else {
        &c
    };
    holder.release().await.unwrap();
    let sa = a
        .acquire_or_renew(later + Duration::seconds(2))
        .await
        .unwrap();
    assert!(sa.leader);
    assert_eq!(sa.fencing, 3);
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
