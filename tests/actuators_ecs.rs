//! ECS actuator against the emulator: observe, set the desired count, deployment hold,
//! readiness from an ALB target group, batching by cluster.

mod aws_fixtures;
mod common;

use aws_fixtures as fx;
use aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum;
use capstan::actuators::{Actuator, AwsActuators};
use capstan::config::Resource;
use chrono::Utc;

fn ecs(cluster: &str, service: &str) -> Resource {
    Resource::EcsService {
        cluster: cluster.into(),
        service: service.into(),
    }
}

#[tokio::test]
async fn observes_and_sets_the_desired_count() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    // Created at 0 the emulator reports the first deployment as completed.
    fx::ecs_service(&sdk, &cluster, &service, 0).await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target("api", ecs(&cluster, &service), None);

    let before = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert_eq!((before.desired, before.ready, before.pending), (0, 0, 0));
    assert_eq!(before.scale_in_blocked, None);
    assert!(!before.change_in_flight);

    let applied = act.set_capacity(&t, 3, &before, Utc::now()).await.unwrap();
    assert_eq!((applied.requested, applied.set), (3, 3));
    assert_eq!(fx::ecs_desired(&sdk, &cluster, &service).await, 3);

    // The emulator starts tasks at once: all three are running (ready).
    let after = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert_eq!((after.desired, after.ready), (3, 3));

    act.set_capacity(&t, 1, &after, Utc::now()).await.unwrap();
    assert_eq!(fx::ecs_desired(&sdk, &cluster, &service).await, 1);
}

#[tokio::test]
async fn a_deployment_in_progress_holds_scale_in() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    // Created with tasks to start, the emulator's first deployment stays IN_PROGRESS.
    fx::ecs_service(&sdk, &cluster, &service, 2).await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target("api", ecs(&cluster, &service), None);

    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    assert_eq!(state.desired, 2);
    assert_eq!(state.pending, 2);
    assert_eq!(
        state.scale_in_blocked.as_deref(),
        Some("deployment in progress")
    );
}

#[tokio::test]
async fn ready_capacity_is_the_healthy_targets_of_the_target_group() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    fx::ecs_service(&sdk, &cluster, &service, 0).await;
    let tg = fx::target_group(&sdk, TargetTypeEnum::Ip, 30).await;
    fx::register_ips(&sdk, &tg, &["172.31.0.10", "172.31.0.11"]).await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target("api", ecs(&cluster, &service), Some(&tg));

    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    act.set_capacity(&t, 3, &state, Utc::now()).await.unwrap();
    let state = act.observe(&[&t], Utc::now()).await.remove(0).unwrap();
    // Three tasks run, but only two targets pass their health checks.
    assert_eq!((state.desired, state.ready), (3, 2));
    assert!(state
        .notes
        .iter()
        .any(|n| n.contains("2 healthy target(s)")));
}

#[tokio::test]
async fn services_are_batched_by_cluster_and_answered_in_order() {
    let sdk = common::sdk().await;
    let clusters = [common::unique("shop"), common::unique("shop")];
    let mut targets = Vec::new();
    // 12 services in one cluster (two DescribeServices calls) and 3 in another, interleaved.
    for i in 0..15i32 {
        let cluster = &clusters[usize::from(i % 5 == 0)];
        let service = common::unique("svc");
        fx::ecs_service(&sdk, cluster, &service, 0).await;
        targets.push((
            fx::target(&format!("t{i}"), ecs(cluster, &service), None),
            i,
        ));
    }
    let act = AwsActuators::new(&sdk);
    for (t, i) in &targets {
        let state = act.observe(&[t], Utc::now()).await.remove(0).unwrap();
        act.set_capacity(t, *i as u32, &state, Utc::now())
            .await
            .unwrap();
    }
    let refs: Vec<&capstan::config::Target> = targets.iter().map(|(t, _)| t).collect();
    let states = act.observe(&refs, Utc::now()).await;
    assert_eq!(states.len(), 15);
    for ((_, i), s) in targets.iter().zip(states) {
        assert_eq!(s.unwrap().desired, *i as u32, "target t{i}");
    }
}
