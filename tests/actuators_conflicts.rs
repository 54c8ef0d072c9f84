//! Start-up conflicts with AWS's own scaling, and taking over from it, against the emulator.

mod aws_fixtures;
mod common;

use aws_fixtures as fx;
use aws_sdk_applicationautoscaling::types::{
    PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTargetAction,
    ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_autoscaling::types::{
    PredefinedMetricSpecification as AsgMetric, TargetTrackingConfiguration,
};
use capstan::actuators::{Actuator, AwsActuators};
use capstan::config::Resource;

/// A scalable target with a target-tracking policy and a scheduled action.
async fn app_autoscaling(
    sdk: &aws_config::SdkConfig,
    namespace: ServiceNamespace,
    resource_id: &str,
    dimension: ScalableDimension,
    metric: &str,
) {
    let aas = aws_sdk_applicationautoscaling::Client::new(sdk);
    aas.register_scalable_target()
        .service_namespace(namespace.clone())
        .resource_id(resource_id)
        .scalable_dimension(dimension.clone())
        .min_capacity(1)
        .max_capacity(10)
        .send()
        .await
        .unwrap();
    aas.put_scaling_policy()
        .policy_name("cpu")
        .service_namespace(namespace.clone())
        .resource_id(resource_id)
        .scalable_dimension(dimension.clone())
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(
            TargetTrackingScalingPolicyConfiguration::builder()
                .target_value(50.0)
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(metric.into())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    aas.put_scheduled_action()
        .service_namespace(namespace)
        .scheduled_action_name("night")
        .resource_id(resource_id)
        .scalable_dimension(dimension)
        .schedule("cron(0 22 * * ? *)")
        .scalable_target_action(
            ScalableTargetAction::builder()
                .min_capacity(1)
                .max_capacity(2)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The scalable target's three suspension flags, read back.
async fn suspended_state(
    sdk: &aws_config::SdkConfig,
    namespace: ServiceNamespace,
    resource_id: &str,
) -> (bool, bool, bool) {
    let out = aws_sdk_applicationautoscaling::Client::new(sdk)
        .describe_scalable_targets()
        .service_namespace(namespace)
        .resource_ids(resource_id)
        .send()
        .await
        .unwrap();
    let s = out.scalable_targets()[0].suspended_state();
    (
        s.and_then(|s| s.dynamic_scaling_in_suspended())
            .unwrap_or(false),
        s.and_then(|s| s.dynamic_scaling_out_suspended())
            .unwrap_or(false),
        s.and_then(|s| s.scheduled_scaling_suspended())
            .unwrap_or(false),
    )
}

#[tokio::test]
async fn application_auto_scaling_on_an_ecs_service_is_found_and_suspended() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    fx::ecs_service(&sdk, &cluster, &service, 0).await;
    let resource_id = format!("service/{cluster}/{service}");
    app_autoscaling(
        &sdk,
        ServiceNamespace::Ecs,
        &resource_id,
        ScalableDimension::EcsServiceDesiredCount,
        "ECSServiceAverageCPUUtilization",
    )
    .await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target(
        "api",
        Resource::EcsService {
            cluster: cluster.clone(),
            service: service.clone(),
        },
        None,
    );

    let found = act.conflicts(&t).await.unwrap();
    let what: Vec<&str> = found.iter().map(|c| c.what.as_str()).collect();
    assert_eq!(
        what,
        vec![
            "Application Auto Scaling scalable target (min 1, max 10)",
            "Application Auto Scaling policy cpu (TargetTrackingScaling)",
            "Application Auto Scaling scheduled action night (cron(0 22 * * ? *))",
        ]
    );
    assert!(found[0].resource.contains(&resource_id));

    let done = act.take_over(&t).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(
        done[0].starts_with("suspended dynamic and scheduled scaling"),
        "{done:?}"
    );
    assert_eq!(
        suspended_state(&sdk, ServiceNamespace::Ecs, &resource_id).await,
        (true, true, true)
    );

    // Suspended scaling is no conflict; a second take-over has nothing to do.
    assert_eq!(act.conflicts(&t).await.unwrap(), vec![]);
    assert!(act.take_over(&t).await.unwrap().is_empty());
}

#[tokio::test]
async fn application_auto_scaling_of_aurora_readers_is_found_and_suspended() {
    let sdk = common::sdk().await;
    let db = common::unique("orders");
    fx::aurora_cluster(&sdk, &db).await;
    let resource_id = format!("cluster:{db}");
    app_autoscaling(
        &sdk,
        ServiceNamespace::Rds,
        &resource_id,
        ScalableDimension::RdsClusterReadReplicaCount,
        "RDSReaderAverageCPUUtilization",
    )
    .await;
    let act = AwsActuators::new(&sdk);
    let t = fx::target(
        "orders-db",
        Resource::AuroraReaders {
            db_cluster: db.clone(),
            reader_prefix: format!("{db}-capstan"),
            instance_class: None,
        },
        None,
    );

    let found = act.conflicts(&t).await.unwrap();
    assert_eq!(found.len(), 3);
    assert!(found[0].resource.contains("rds:cluster:ReadReplicaCount"));

    act.take_over(&t).await.unwrap();
    assert_eq!(
        suspended_state(&sdk, ServiceNamespace::Rds, &resource_id).await,
        (true, true, true)
    );
    assert_eq!(act.conflicts(&t).await.unwrap(), vec![]);
}

#[tokio::test]
async fn auto_scaling_group_policies_are_found_and_suspended() {
    let sdk = common::sdk().await;
    let name = common::unique("web");
    fx::asg(&sdk, &name, (1, 5, 2), &[]).await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    autoscaling
        .put_scaling_policy()
        .auto_scaling_group_name(&name)
        .policy_name("cpu")
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(
            TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    AsgMetric::builder()
                        .predefined_metric_type("ASGAverageCPUUtilization".into())
                        .build(),
                )
                .target_value(50.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    autoscaling
        .put_scheduled_update_group_action()
        .auto_scaling_group_name(&name)
        .scheduled_action_name("night")
        .recurrence("0 22 * * *")
        .desired_capacity(1)
        .send()
        .await
        .unwrap();
    let act = AwsActuators::new(&sdk);
    let t = fx::target("web", Resource::Asg { name: name.clone() }, None);

    let found = act.conflicts(&t).await.unwrap();
    let what: Vec<&str> = found.iter().map(|c| c.what.as_str()).collect();
    assert_eq!(
        what,
        vec![
            "Auto Scaling policy cpu (TargetTrackingScaling)",
            "Auto Scaling scheduled action night (0 22 * * *)",
        ]
    );

    let done = act.take_over(&t).await.unwrap();
    assert_eq!(
        done,
        vec![format!(
            "suspended process(es) AlarmNotification, ScheduledActions of Auto Scaling group {name}"
        )]
    );
    let out = autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .unwrap();
    let mut suspended: Vec<&str> = out.auto_scaling_groups()[0]
        .suspended_processes()
        .iter()
        .filter_map(|p| p.process_name())
        .collect();
    suspended.sort();
    assert_eq!(suspended, vec!["AlarmNotification", "ScheduledActions"]);

    assert_eq!(act.conflicts(&t).await.unwrap(), vec![]);
    assert!(act.take_over(&t).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_resource_without_aws_scaling_has_no_conflicts() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    fx::ecs_service(&sdk, &cluster, &service, 0).await;
    let name = common::unique("web");
    fx::asg(&sdk, &name, (0, 2, 1), &[]).await;
    let act = AwsActuators::new(&sdk);
    let ecs = fx::target("api", Resource::EcsService { cluster, service }, None);
    let group = fx::target("web", Resource::Asg { name }, None);

    assert!(act.conflicts(&ecs).await.unwrap().is_empty());
    assert!(act.conflicts(&group).await.unwrap().is_empty());
    assert!(act.take_over(&ecs).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_forecast_and_scale_predictive_policy_survives_take_over_as_a_conflict() {
    use aws_sdk_autoscaling::types::{
        PredefinedMetricPairType, PredictiveScalingConfiguration,
        PredictiveScalingMetricSpecification, PredictiveScalingMode,
        PredictiveScalingPredefinedMetricPair,
    };
    let sdk = common::sdk().await;
    let name = common::unique("web");
    fx::asg(&sdk, &name, (1, 5, 2), &[]).await;
    aws_sdk_autoscaling::Client::new(&sdk)
        .put_scaling_policy()
        .auto_scaling_group_name(&name)
        .policy_name("forecast")
        .policy_type("PredictiveScaling")
        .predictive_scaling_configuration(
            PredictiveScalingConfiguration::builder()
                .metric_specifications(
                    PredictiveScalingMetricSpecification::builder()
                        .target_value(50.0)
                        .predefined_metric_pair_specification(
                            PredictiveScalingPredefinedMetricPair::builder()
                                .predefined_metric_type(PredefinedMetricPairType::AsgcpuUtilization)
                                .build(),
                        )
                        .build(),
                )
                .mode(PredictiveScalingMode::ForecastAndScale)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let act = AwsActuators::new(&sdk);
    let t = fx::target("web", Resource::Asg { name: name.clone() }, None);

    assert_eq!(act.conflicts(&t).await.unwrap().len(), 1);
    act.take_over(&t).await.unwrap();
    // Suspended processes do not stop predictive scaling: still a conflict, with the fix.
    let left = act.conflicts(&t).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        left[0].what.contains("set it to ForecastOnly or delete it"),
        "{left:?}"
    );
}
