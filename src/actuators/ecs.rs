//! ECS services: `DescribeServices` (up to 10 services of one cluster per call) and
//! `UpdateService` of the desired count.

use aws_sdk_ecs::Client;

use super::CapacityState;
use crate::aws::{AwsError, ErrorClass};
use crate::aws_error;

/// `DescribeServices` accepts at most this many services per call.
pub(crate) const DESCRIBE_BATCH: usize = 10;

/// The parts of an ECS service capstan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceView {
    pub name: String,
    pub arn: String,
    /// `ACTIVE`, `DRAINING` or `INACTIVE`.
    pub status: String,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    pub deployments: Vec<DeploymentView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DeploymentView {
    /// `PRIMARY`, `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`; absent for some deployment controllers.
    pub rollout_state: Option<String>,
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

impl ServiceView {
    pub(crate) fn from_sdk(s: &aws_sdk_ecs::types::Service) -> Self {
        ServiceView {
            name: s.service_name().unwrap_or_default().to_string(),
            arn: s.service_arn().unwrap_or_default().to_string(),
            status: s.status().unwrap_or_default().to_string(),
            desired: count(s.desired_count()),
            running: count(s.running_count()),
            pending: count(s.pending_count()),
            deployments: s
                .deployments()
                .iter()
                .map(|d| DeploymentView {
                    status: d.status().unwrap_or_default().to_string(),
                    rollout_state: d.rollout_state().map(|r| r.as_str().to_string()),
                })
                .collect(),
        }
    }
}

/// The resource id ECS and Application Auto Scaling use for a service.
pub(crate) fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// Whether a deployment is under way: more than one live deployment (old tasks still being
/// replaced), or the primary one still rolling out. AWS holds scale-in meanwhile.
pub(crate) fn deployment_in_progress(deployments: &[DeploymentView]) -> bool {
    let live: Vec<&DeploymentView> = deployments
        .iter()
        .filter(|d| d.status != "INACTIVE")
        .collect();
    live.len() > 1
        || live
            .iter()
            .any(|d| d.status == "PRIMARY" && d.rollout_state.as_deref() == Some("IN_PROGRESS"))
}

/// The capacity of a service. `healthy_targets` is the healthy count of its ALB target
/// group, when it has one; otherwise running tasks are ready capacity.
pub(crate) fn capacity(s: &ServiceView, healthy_targets: Option<u32>) -> CapacityState {
    let mut state = CapacityState {
        desired: s.desired,
        ready: healthy_targets.unwrap_or(s.running),
        pending: s.pending,
        ..CapacityState::default()
    };
    if deployment_in_progress(&s.deployments) {
        state.scale_in_blocked = Some("deployment in progress".into());
        let live = s
            .deployments
            .iter()
            .filter(|d| d.status != "INACTIVE")
            .count();
        state
            .notes
            .push(format!("{live} live deployment(s); ECS holds scale-in"));
    }
    if let Some(h) = healthy_targets {
        state.notes.push(format!(
            "{h} healthy target(s) in the target group, {} task(s) running",
            s.running
        ));
    }
    state
}

/// Pairs each requested service (name or ARN) with what `DescribeServices` returned:
/// a service, or the reason of its failure entry.
pub(crate) fn match_services(
    requested: &[&str],
    services: &[ServiceView],
    failures: &[(String, String)],
) -> Vec<Result<ServiceView, String>> {
    requested
        .iter()
        .map(|want| {
            if let Some(s) = services.iter().find(|s| s.name == *want || s.arn == *want) {
                return if s.status == "ACTIVE" {
                    Ok(s.clone())
                } else {
                    Err(format!("service status is {}", s.status))
                };
            }
            let failure = failures.iter().find(|(arn, _)| {
                arn == want
                    || arn.rsplit('/').next() == Some(want.rsplit('/').next().unwrap_or(want))
            });
            Err(match failure {
                Some((_, reason)) => format!("service not found ({reason})"),
                None => "service not found".into(),
            })
        })
        .collect()
}

/// [`describe`] of a batch of `(target index, service)`.
pub(crate) async fn describe_batch(
    client: &Client,
    cluster: &str,
    batch: &[(usize, &str)],
) -> Result<Vec<Result<ServiceView, AwsError>>, AwsError> {
    let names: Vec<&str> = batch.iter().map(|(_, s)| *s).collect();
    describe(client, cluster, &names).await
}

/// Describes up to [`DESCRIBE_BATCH`] services of one cluster, in the order asked.
/// The outer error is a failure of the whole call (e.g. the cluster does not exist).
pub(crate) async fn describe(
    client: &Client,
    cluster: &str,
    services: &[&str],
) -> Result<Vec<Result<ServiceView, AwsError>>, AwsError> {
    crate::ratelimit::acquire("DescribeServices").await;
    let out = client
        .describe_services()
        .cluster(cluster)
        .set_services(Some(services.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .map_err(|e| aws_error!(aws_sdk_ecs, e, "ecs", "DescribeServices", cluster))?;
    let views: Vec<ServiceView> = out.services().iter().map(ServiceView::from_sdk).collect();
    let failures: Vec<(String, String)> = out
        .failures()
        .iter()
        .map(|f| {
            (
                f.arn().unwrap_or_default().to_string(),
                f.reason().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Ok(match_services(services, &views, &failures)
        .into_iter()
        .zip(services)
        .map(|(r, name)| {
            r.map_err(|why| {
                AwsError::new(
                    ErrorClass::NotFound,
                    "ecs",
                    "DescribeServices",
                    resource_id(cluster, name),
                    why,
                )
            })
        })
        .collect())
}

/// Sets the desired count; returns the desired count ECS reports back.
pub(crate) async fn update_desired(
    client: &Client,
    cluster: &str,
    service: &str,
    desired: u32,
) -> Result<u32, AwsError> {
    let resource = resource_id(cluster, service);
    let count = i32::try_from(desired).map_err(|_| {
        AwsError::new(
            ErrorClass::Invalid,
            "ecs",
            "UpdateService",
            &resource,
            format!("desired count {desired} is out of range"),
        )
    })?;
    crate::ratelimit::acquire("UpdateService").await;
    let out = client
        .update_service()
        .cluster(cluster)
        .service(service)
        .desired_count(count)
        .send()
        .await
        .map_err(|e| aws_error!(aws_sdk_ecs, e, "ecs", "UpdateService", resource))?;
    Ok(out
        .service()
        .map(|s| self::count(s.desired_count()))
        .unwrap_or(desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(status: &str, rollout: Option<&str>) -> DeploymentView {
        DeploymentView {
            status: status.into(),
            rollout_state: rollout.map(str::to_string),
        }
    }

    fn svc(name: &str, deployments: Vec<DeploymentView>) -> ServiceView {
        ServiceView {
            name: name.into(),
            arn: format!("arn:aws:ecs:us-east-1:111122223333:service/shop/{name}"),
            status: "ACTIVE".into(),
            desired: 4,
            running: 3,
            pending: 1,
            deployments,
        }
    }

    #[test]
    fn reads_a_service_from_the_sdk() {
        use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
        let s = Service::builder()
            .service_name("api")
            .service_arn("arn:aws:ecs:us-east-1:111122223333:service/shop/api")
            .status("ACTIVE")
            .desired_count(5)
            .running_count(4)
            .pending_count(-1)
            .deployments(
                Deployment::builder()
                    .status("PRIMARY")
                    .rollout_state(DeploymentRolloutState::InProgress)
                    .build(),
            )
            .deployments(Deployment::builder().status("ACTIVE").build())
            .build();
        let v = ServiceView::from_sdk(&s);
        assert_eq!((v.name.as_str(), v.status.as_str()), ("api", "ACTIVE"));
        // A negative count (never sent by AWS) reads as zero.
        assert_eq!((v.desired, v.running, v.pending), (5, 4, 0));
        assert_eq!(
            v.deployments,
            vec![dep("PRIMARY", Some("IN_PROGRESS")), dep("ACTIVE", None)]
        );
    }

    #[test]
    fn detects_deployments_in_progress() {
        assert!(!deployment_in_progress(&[]));
        assert!(!deployment_in_progress(&[dep(
            "PRIMARY",
            Some("COMPLETED")
        )]));
        assert!(!deployment_in_progress(&[dep("PRIMARY", None)]));
        assert!(deployment_in_progress(&[dep(
            "PRIMARY",
            Some("IN_PROGRESS")
        )]));
        // A new primary replacing an older active deployment, even if the primary says done.
        assert!(deployment_in_progress(&[
            dep("PRIMARY", Some("COMPLETED")),
            dep("ACTIVE", Some("COMPLETED")),
        ]));
        // Inactive deployments are history, not work in progress.
        assert!(!deployment_in_progress(&[
            dep("PRIMARY", Some("COMPLETED")),
            dep("INACTIVE", Some("COMPLETED")),
        ]));
        // A failed rollout is not in progress.
        assert!(!deployment_in_progress(&[dep("PRIMARY", Some("FAILED"))]));
    }

    #[test]
    fn capacity_from_running_tasks_or_healthy_targets() {
        let s = svc("api", vec![dep("PRIMARY", Some("COMPLETED"))]);
        let c = capacity(&s, None);
        assert_eq!((c.desired, c.ready, c.pending), (4, 3, 1));
        assert_eq!(c.scale_in_blocked, None);
        assert!(!c.change_in_flight);

        let c = capacity(&s, Some(2));
        assert_eq!((c.desired, c.ready, c.pending), (4, 2, 1));
        assert!(c.notes[0].contains("2 healthy target(s)"), "{:?}", c.notes);
    }

    #[test]
    fn deployment_blocks_scale_in() {
        let s = svc(
            "api",
            vec![dep("PRIMARY", Some("IN_PROGRESS")), dep("ACTIVE", None)],
        );
        let c = capacity(&s, None);
        assert_eq!(
            c.scale_in_blocked.as_deref(),
            Some("deployment in progress")
        );
        assert!(c.notes.iter().any(|n| n.contains("2 live deployment(s)")));
    }

    #[test]
    fn matches_services_by_name_or_arn_and_reports_failures() {
        let api = svc("api", vec![]);
        let mut old = svc("old", vec![]);
        old.status = "INACTIVE".into();
        let failures = vec![(
            "arn:aws:ecs:us-east-1:111122223333:service/shop/gone".to_string(),
            "MISSING".to_string(),
        )];
        let got = match_services(
            &["gone", &api.arn.clone(), "old", "api", "never"],
            &[api.clone(), old],
            &failures,
        );
        assert_eq!(got[0], Err("service not found (MISSING)".into()));
        assert_eq!(got[1], Ok(api.clone()));
        assert_eq!(got[2], Err("service status is INACTIVE".into()));
        assert_eq!(got[3], Ok(api));
        assert_eq!(got[4], Err("service not found".into()));
    }
}
