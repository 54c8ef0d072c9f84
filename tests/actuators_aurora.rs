//! Aurora reader actuator against the emulator: readers added with the lowest free names
//! and capstan's tags, removal of capstan's own readers only, and the one-change-in-flight
//! rule.

mod aws_fixtures;
mod common;

use aws_fixtures as fx;
use capstan::actuators::{Actuator, AwsActuators};
use capstan::config::{Resource, Target};
use chrono::Utc;

fn readers(db_cluster: &str, instance_class: Option<&str>) -> Resource {
    Resource::AuroraReaders {
        db_cluster: db_cluster.into(),
        reader_prefix: format!("{db_cluster}-capstan"),
        instance_class: instance_class.map(str::to_string),
    }
}

async fn set(act: &AwsActuators, t: &Target, desired: u32) -> capstan::actuators::Applied {
    let state = act.observe(&[t], Utc::now()).await.remove(0).unwrap();
    act.set_capacity(t, desired, &state, Utc::now())
        .await
        .unwrap()
}

fn names(instances: &[fx::DbInstance]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}

fn tags(target: &str) -> Vec<(String, String)> {
    vec![
        ("capstan:managed".into(), "true".into()),
        ("capstan:target".into(), target.into()),
    ]
}

#[tokio::test]
async fn adds_readers_named_and_tagged_then_removes_only_its_own() {
    let sdk = common::sdk().await;
    let db = common::unique("orders");
    fx::aurora_cluster(&sdk, &db).await;
    // A reader a person added: capstan counts it but never removes it.
    let manual = format!("{db}-manual");
    fx::db_instance(&sdk, &db, &manual, &[]).await;
    let writer = format!("{db}-writer");
    let act = AwsActuators::new(&sdk);
    let t = fx::target("orders-db", readers(&db, None), None);

    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert_eq!((state.desired, state.ready, state.pending), (1, 1, 0));
    assert!(!state.change_in_flight);

    // Two readers added, named <prefix>-1 and -2, in the writer's class, tagged.
    let applied = set(&act, &t, 3).await;
    assert_eq!((applied.requested, applied.set), (3, 3));
    let (r1, r2) = (format!("{db}-capstan-1"), format!("{db}-capstan-2"));
    let got = fx::aurora_instances(&sdk, &db).await;
    assert_eq!(
        names(&got),
        vec![r1.as_str(), r2.as_str(), &manual, &writer]
    );
    for r in &got[..2] {
        assert!(!r.writer);
        assert_eq!(r.class, fx::WRITER_CLASS);
        assert_eq!(r.engine, "aurora-postgresql");
        assert_eq!(r.tags, tags("orders-db"));
    }
    assert!(got[3].writer);
    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert_eq!((state.desired, state.ready), (3, 3));

    // One fewer: the highest-numbered of capstan's readers goes.
    assert_eq!(set(&act, &t, 2).await.set, 2);
    let got = fx::aurora_instances(&sdk, &db).await;
    assert_eq!(names(&got), vec![r1.as_str(), &manual, &writer]);

    // One more: the lowest free number is taken again.
    set(&act, &t, 3).await;
    let got = fx::aurora_instances(&sdk, &db).await;
    assert_eq!(
        names(&got),
        vec![r1.as_str(), r2.as_str(), &manual, &writer]
    );

    // Down to zero: only capstan's two readers can go; the writer and the manual reader stay.
    let applied = set(&act, &t, 0).await;
    assert_eq!(applied.set, 1);
    assert!(
        applied.notes[0].starts_with("asked to remove 3 reader(s), but only 2"),
        "{:?}",
        applied.notes
    );
    let got = fx::aurora_instances(&sdk, &db).await;
    assert_eq!(names(&got), vec![manual.as_str(), &writer]);
    assert!(got[1].writer);
}

#[tokio::test]
async fn uses_the_configured_class_and_skips_taken_names() {
    let sdk = common::sdk().await;
    let db = common::unique("orders");
    fx::aurora_cluster(&sdk, &db).await;
    // Someone else's instance already holds <prefix>-1 (and another target's tag).
    let taken = format!("{db}-capstan-1");
    fx::db_instance(
        &sdk,
        &db,
        &taken,
        &[("capstan:managed", "true"), ("capstan:target", "other")],
    )
    .await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target("orders-db", readers(&db, Some("db.t4g.medium")), None);

    set(&act, &t, 2).await;
    let got = fx::aurora_instances(&sdk, &db).await;
    let new = got
        .iter()
        .find(|i| i.id == format!("{db}-capstan-2"))
        .unwrap();
    assert_eq!(new.class, "db.t4g.medium");
    assert_eq!(new.tags, tags("orders-db"));

    // The reader tagged for another target is not this target's to remove.
    let applied = set(&act, &t, 0).await;
    assert_eq!(applied.set, 1);
    let got = fx::aurora_instances(&sdk, &db).await;
    assert_eq!(names(&got), vec![taken.as_str(), &format!("{db}-writer")]);
}

#[tokio::test]
async fn an_instance_not_available_blocks_changes() {
    let sdk = common::sdk().await;
    let db = common::unique("orders");
    fx::aurora_cluster(&sdk, &db).await;
    let manual = format!("{db}-manual");
    fx::db_instance(&sdk, &db, &manual, &[]).await;
    // The emulator lets a member instance be stopped (AWS would stop the whole cluster):
    // the simplest way to get an instance that is not `available`.
    aws_sdk_rds::Client::new(&sdk)
        .stop_db_instance()
        .db_instance_identifier(&manual)
        .send()
        .await
        .unwrap();
    let act = AwsActuators::new(&sdk);
    let t = fx::target("orders-db", readers(&db, None), None);

    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert!(state.change_in_flight);
    assert_eq!(
        state.scale_in_blocked,
        Some(format!("cluster change in flight: {manual} is stopped"))
    );
    assert_eq!((state.desired, state.ready), (1, 0));

    let applied = act.set_capacity(&t, 3, &state, Utc::now()).await.unwrap();
    assert_eq!(applied.set, 1);
    assert!(applied.notes[0].ends_with("nothing done"));
    assert_eq!(fx::aurora_instances(&sdk, &db).await.len(), 2);
}
