//! One observe call over every resource kind: a missing resource fails alone, as NotFound,
//! while the other targets of the same call are read.

mod aws_fixtures;
mod common;

use aws_fixtures as fx;
use capstan::actuators::{Actuator, AwsActuators};
use capstan::aws::ErrorClass;
use capstan::config::Resource;
use chrono::Utc;

#[tokio::test]
async fn a_missing_resource_fails_alone() {
    let sdk = common::sdk().await;
    let (cluster, service) = (common::unique("shop"), common::unique("api"));
    fx::ecs_service(&sdk, &cluster, &service, 0).await;
    let group = common::unique("web");
    fx::asg(&sdk, &group, (0, 4, 2), &[]).await;
    let db = common::unique("orders");
    fx::aurora_cluster(&sdk, &db).await;
    let missing_cluster = common::unique("nocluster");

    let ecs = |cluster: &str, service: &str| Resource::EcsService {
        cluster: cluster.into(),
        service: service.into(),
    };
    let aurora = |db: &str| Resource::AuroraReaders {
        db_cluster: db.into(),
        reader_prefix: format!("{db}-capstan"),
        instance_class: None,
    };
    let targets = [
        fx::target("api", ecs(&cluster, &service), None),
        fx::target("gone-service", ecs(&cluster, "no-such-service"), None),
        fx::target("gone-cluster", ecs(&missing_cluster, &service), None),
        fx::target("web", Resource::Asg { name: group.clone() }, None),
        fx::target(
            "gone-group",
            Resource::Asg {
                name: common::unique("nogroup"),
            },
            None,
        ),
        fx::target("orders-db", aurora(&db), None),
        fx::target("gone-db", aurora(&common::unique("nodb")), None),
        fx::target(
            "gone-target-group",
            ecs(&cluster, &service),
            Some("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/none/0123456789abcdef"),
        ),
    ];
    let refs: Vec<&capstan::config::Target> = targets.iter().collect();
    let act = AwsActuators::new(&sdk);
    let got = act.observe(&refs, Utc::now()).await;
    assert_eq!(got.len(), targets.len());

    let ok: Vec<(usize, u32)> = got
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|s| (i, s.desired)))
        .collect();
    // The service (0 tasks), the group (2 instances), the cluster (no readers yet).
    assert_eq!(ok, vec![(0, 0), (3, 2), (5, 0)]);

    for (i, r) in got.iter().enumerate() {
        if let Err(e) = r {
            assert_eq!(
                e.class,
                ErrorClass::NotFound,
                "target {}: {e}",
                targets[i].name
            );
        }
    }
    let err = |i: usize| got[i].as_ref().unwrap_err();
    assert_eq!(
        err(1).resource,
        format!("service/{cluster}/no-such-service")
    );
    assert_eq!(
        err(2).resource,
        format!("service/{missing_cluster}/{service}")
    );
    assert_eq!(err(2).operation, "DescribeServices");
    assert_eq!(err(4).operation, "DescribeAutoScalingGroups");
    assert_eq!(err(6).operation, "DescribeDBClusters");
    assert_eq!(err(7).operation, "DescribeTargetHealth");
    assert!(err(1).to_string().contains("not found"));
}
