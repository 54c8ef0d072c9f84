//! Auto Scaling group actuator against the emulator: desired capacity clamped to the
//! group's bounds, scale-in protection, and the drain through an ALB target group with the
//! clock driven explicitly.

mod aws_fixtures;
mod common;

use aws_fixtures as fx;
use aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum;
use capstan::actuators::{Actuator, AwsActuators};
use capstan::config::Resource;
use chrono::{DateTime, Duration, TimeZone, Utc};

fn asg(name: &str) -> Resource {
    Resource::Asg { name: name.into() }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn ids(instances: &[(String, String, bool)]) -> Vec<String> {
    instances.iter().map(|(id, _, _)| id.clone()).collect()
}

fn healthy(targets: &[(String, String)]) -> Vec<String> {
    targets
        .iter()
        .filter(|(_, s)| s == "healthy")
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn sets_desired_capacity_clamped_to_the_group_max() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    fx::asg(&sdk, &name, (1, 4, 1), &[]).await;
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let t = fx::target("web", asg(&name), None);

    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    assert_eq!((state.desired, state.ready, state.pending), (1, 1, 0));
    assert_eq!((state.resource_min, state.resource_max), (Some(1), Some(4)));

    let applied = act.set_capacity(&t, 6, &state, t0()).await.unwrap();
    assert_eq!((applied.requested, applied.set), (6, 4));
    assert_eq!(
        applied.notes,
        vec!["asked for 6, above the group's max size 4: set 4"]
    );
    let (desired, instances) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, instances.len()), (4, 4));

    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    assert_eq!((state.desired, state.ready), (4, 4));

    // Below the minimum: clamped up, noted.
    let applied = act.set_capacity(&t, 0, &state, t0()).await.unwrap();
    assert_eq!(applied.set, 1);
    assert!(applied.notes[0].contains("below the group's min size 1"));
    assert_eq!(fx::asg_state(&sdk, &name).await.0, 1);
}

#[tokio::test]
async fn never_asks_for_fewer_than_the_protected_instances() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    fx::asg(&sdk, &name, (0, 5, 3), &[]).await;
    let (_, instances) = fx::asg_state(&sdk, &name).await;
    let protected: Vec<String> = ids(&instances)[..2].to_vec();
    fx::protect(&sdk, &name, &protected).await;
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let t = fx::target("web", asg(&name), None);

    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    assert!(state
        .notes
        .iter()
        .any(|n| n.starts_with("2 instance(s) protected")));
    let applied = act.set_capacity(&t, 0, &state, t0()).await.unwrap();
    assert_eq!(applied.set, 2);
    assert_eq!(
        applied.notes,
        vec!["asked for 0, but 2 instance(s) are protected from scale-in: set 2"]
    );
    let (desired, instances) = fx::asg_state(&sdk, &name).await;
    assert_eq!(desired, 2);
    assert_eq!(ids(&instances), protected);
}

#[tokio::test]
async fn scale_in_behind_a_target_group_drains_before_terminating() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    let tg = fx::target_group(&sdk, TargetTypeEnum::Instance, 30).await;
    fx::asg(&sdk, &name, (0, 6, 4), &[&tg]).await;
    let (_, instances) = fx::asg_state(&sdk, &name).await;
    let all = ids(&instances);
    // The highest id would be drained first; protection keeps it.
    fx::protect(&sdk, &name, &all[3..]).await;
    assert_eq!(healthy(&fx::target_health(&sdk, &tg).await), all);

    let act = AwsActuators::new(&sdk);

    act.set_acting(true);
    let t = fx::target("web", asg(&name), Some(&tg));
    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    assert_eq!((state.desired, state.ready), (4, 4));

    let applied = act.set_capacity(&t, 2, &state, t0()).await.unwrap();
    assert_eq!(applied.set, 2);
    let victims = [all[2].clone(), all[1].clone()];
    assert!(
        applied.notes[0].starts_with(&format!("draining {}, {} out of", victims[0], victims[1])),
        "{:?}",
        applied.notes
    );
    assert!(applied.notes[0].contains("until 2026-03-01T12:00:30Z (deregistration delay 30 s)"));

    // Deregistered at once, still running in the group.
    let serving = healthy(&fx::target_health(&sdk, &tg).await);
    assert_eq!(serving, vec![all[0].clone(), all[3].clone()]);
    let (desired, instances) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, ids(&instances)), (4, all.clone()));

    // While draining: scale-in is held (a scale-out could still go ahead), and a call
    // before the end of the delay changes nothing.
    let state = act
        .observe(&[&t], t0() + Duration::seconds(10))
        .await
        .remove(0)
        .unwrap();
    assert_eq!((state.desired, state.ready), (2, 2));
    assert!(!state.change_in_flight);
    assert_eq!(
        state.scale_in_blocked.as_deref(),
        Some("draining 2 instance(s) until 2026-03-01T12:00:30Z")
    );
    let applied = act
        .set_capacity(&t, 1, &state, t0() + Duration::seconds(29))
        .await
        .unwrap();
    assert_eq!(applied.set, 2);
    assert!(applied.notes[0].starts_with("draining 2 instance(s)"));
    let state = act
        .observe(&[&t], t0() + Duration::seconds(29))
        .await
        .remove(0)
        .unwrap();
    assert!(state.scale_in_blocked.is_some());
    assert_eq!(fx::asg_state(&sdk, &name).await, (4, instances.clone()));

    // The first look at or after the end of the delay terminates the drained instances.
    let state = act
        .observe(&[&t], t0() + Duration::seconds(30))
        .await
        .remove(0)
        .unwrap();
    assert_eq!((state.desired, state.ready), (2, 2));
    assert_eq!(state.scale_in_blocked, None);
    assert!(
        state.notes.iter().any(|n| n
            == &format!(
                "drain over: terminated 2 instance(s) {}, {}",
                victims[0], victims[1]
            )),
        "{:?}",
        state.notes
    );
    let (desired, left) = fx::asg_state(&sdk, &name).await;
    assert_eq!(desired, 2);
    assert_eq!(ids(&left), vec![all[0].clone(), all[3].clone()]);

    let state = act
        .observe(&[&t], t0() + Duration::seconds(31))
        .await
        .remove(0)
        .unwrap();
    assert_eq!((state.desired, state.ready), (2, 2));
    assert!(state.notes.iter().all(|n| !n.contains("drain")));
}

#[tokio::test]
async fn scale_out_during_a_drain_puts_drained_instances_back() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    let tg = fx::target_group(&sdk, TargetTypeEnum::Instance, 300).await;
    fx::asg(&sdk, &name, (0, 6, 3), &[&tg]).await;
    let all = ids(&fx::asg_state(&sdk, &name).await.1);
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let t = fx::target("web", asg(&name), Some(&tg));

    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    act.set_capacity(&t, 1, &state, t0()).await.unwrap();
    assert_eq!(
        healthy(&fx::target_health(&sdk, &tg).await),
        vec![all[0].clone()]
    );

    // Asked for 2 while two instances drain: one goes back into service, nothing launches.
    let state = act
        .observe(&[&t], t0() + Duration::seconds(5))
        .await
        .remove(0)
        .unwrap();
    assert_eq!(state.desired, 1);
    let applied = act
        .set_capacity(&t, 2, &state, t0() + Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(applied.set, 2);
    assert!(applied.notes[0].starts_with("put 1 draining instance(s) back into service"));
    assert_eq!(healthy(&fx::target_health(&sdk, &tg).await).len(), 2);
    let (desired, instances) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, instances.len()), (3, 3));

    let state = act
        .observe(&[&t], t0() + Duration::seconds(6))
        .await
        .remove(0)
        .unwrap();
    assert_eq!(state.desired, 2);
    assert_eq!(
        state.scale_in_blocked.as_deref(),
        Some("draining 1 instance(s) until 2026-03-01T12:05:00Z")
    );

    // The one left draining is terminated by the first call after its delay.
    let applied = act
        .set_capacity(&t, 2, &state, t0() + Duration::seconds(300))
        .await
        .unwrap();
    assert_eq!(applied.set, 2);
    assert!(applied.notes[0].starts_with("drain over: terminated 1 instance(s)"));
    let (desired, instances) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, instances.len()), (2, 2));
    assert_eq!(
        healthy(&fx::target_health(&sdk, &tg).await),
        ids(&instances)
    );
}

#[tokio::test]
async fn a_drain_cut_short_by_a_restart_is_reported_and_picked_up() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    let tg = fx::target_group(&sdk, TargetTypeEnum::Instance, 300).await;
    fx::asg(&sdk, &name, (0, 6, 3), &[&tg]).await;
    let all = ids(&fx::asg_state(&sdk, &name).await.1);
    let t = fx::target("web", asg(&name), Some(&tg));
    // The first process drains the lowest id (the others are protected for the moment).
    fx::protect(&sdk, &name, &all[1..]).await;
    {
        let act = AwsActuators::new(&sdk);
        act.set_acting(true);
        let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
        act.set_capacity(&t, 2, &state, t0()).await.unwrap();
    }
    fx::set_protection(&sdk, &name, &all[1..], false).await;

    // A new process knows nothing of that drain: it sees an instance out of service that
    // nobody will terminate, and says so.
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let state = act
        .observe(&[&t], t0() + Duration::seconds(10))
        .await
        .remove(0)
        .unwrap();
    assert_eq!((state.desired, state.ready), (3, 2));
    assert_eq!(state.scale_in_blocked, None);
    assert!(
        state.notes.iter().any(|n| n
            .starts_with("1 InService instance(s) not registered in the target group")
            && n.ends_with(&all[0])),
        "{:?}",
        state.notes
    );

    // Its next scale-in takes that instance first, not the highest id.
    let applied = act
        .set_capacity(&t, 2, &state, t0() + Duration::seconds(10))
        .await
        .unwrap();
    assert!(
        applied.notes[0].starts_with(&format!("draining {} out of", all[0])),
        "{:?}",
        applied.notes
    );
    act.observe(&[&t], t0() + Duration::seconds(310))
        .await
        .remove(0)
        .unwrap();
    let (desired, left) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, ids(&left)), (2, all[1..].to_vec()));
}

#[tokio::test]
async fn without_a_deregistration_delay_scale_in_terminates_at_once() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    let tg = fx::target_group(&sdk, TargetTypeEnum::Instance, 0).await;
    fx::asg(&sdk, &name, (0, 6, 2), &[&tg]).await;
    let all = ids(&fx::asg_state(&sdk, &name).await.1);
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let t = fx::target("web", asg(&name), Some(&tg));

    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    let applied = act.set_capacity(&t, 1, &state, t0()).await.unwrap();
    assert_eq!(applied.set, 1);
    assert!(
        applied.notes[0].starts_with(&format!("terminated {} once out of", all[1])),
        "{:?}",
        applied.notes
    );
    let (desired, left) = fx::asg_state(&sdk, &name).await;
    assert_eq!((desired, ids(&left)), (1, vec![all[0].clone()]));
    let state = act.observe(&[&t], t0()).await.remove(0).unwrap();
    assert_eq!(
        (state.desired, state.ready, state.scale_in_blocked),
        (1, 1, None)
    );
}

#[tokio::test]
async fn a_process_that_may_not_act_never_finishes_a_drain() {
    let sdk = common::sdk().await;
    let tg = fx::target_group(
        &sdk,
        aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance,
        30,
    )
    .await;
    let name = common::unique("asg");
    fx::asg(&sdk, &name, (0, 10, 3), &[&tg]).await;
    let act = AwsActuators::new(&sdk);
    act.set_acting(true);
    let t = fx::target("search", asg(&name), Some(&tg));
    let now = t0();
    let state = act.observe(&[&t], now).await.remove(0).unwrap();
    act.set_capacity(&t, 2, &state, now).await.unwrap();
    // Demoted (lost lease, or reloaded into dry run): the due drain is left alone.
    act.set_acting(false);
    act.observe(&[&t], now + chrono::Duration::seconds(31))
        .await
        .remove(0)
        .unwrap();
    assert_eq!(
        fx::asg_state(&sdk, &name).await.1.len(),
        3,
        "no instance terminated"
    );
    // Acting again, the drain is finished.
    act.set_acting(true);
    act.observe(&[&t], now + chrono::Duration::seconds(32))
        .await
        .remove(0)
        .unwrap();
    assert_eq!(fx::asg_state(&sdk, &name).await.1.len(), 2);
}
