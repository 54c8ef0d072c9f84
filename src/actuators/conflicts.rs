//! AWS's own scaling on a resource capstan is to manage, and taking over from it.
//!
//! - ECS services and Aurora reader counts: Application Auto Scaling scalable targets,
//!   scaling policies and scheduled actions. Take-over registers the scalable target again
//!   with all three `SuspendedState` flags set (its policies and schedules stay in place,
//!   inert, so a person can resume them).
//! - Auto Scaling groups: scaling policies and scheduled actions. Take-over suspends the
//!   group's `AlarmNotification` (target tracking, step and simple policies) and
//!   `ScheduledActions` processes. A predictive scaling policy in `ForecastAndScale` mode is
//!   not stopped by either: it stays a conflict until someone switches it to `ForecastOnly`
//!   or deletes it, which capstan does not do on its own.
//!
//! Only scaling that can act is a conflict: after a take-over, `conflicts` lists nothing
//! but what could not be suspended.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace, SuspendedState};

use super::{asg, ecs, Conflict};
use crate::aws::AwsError;
use crate::aws_error;
use crate::config::Resource;

/// Where Application Auto Scaling would scale a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AasKey {
    pub namespace: ServiceNamespace,
    pub resource_id: String,
    pub dimension: ScalableDimension,
}

impl AasKey {
    pub(crate) fn of(resource: &Resource) -> Option<Self> {
        match resource {
            Resource::EcsService { cluster, service } => Some(AasKey {
                namespace: ServiceNamespace::Ecs,
                resource_id: ecs::resource_id(cluster, service),
                dimension: ScalableDimension::EcsServiceDesiredCount,
            }),
            Resource::AuroraReaders { db_cluster, .. } => Some(AasKey {
                namespace: ServiceNamespace::Rds,
                resource_id: format!("cluster:{db_cluster}"),
                dimension: ScalableDimension::RdsClusterReadReplicaCount,
            }),
            Resource::Asg { .. } => None,
        }
    }

    /// e.g. `ecs service/shop/api (ecs:service:DesiredCount)`.
    pub(crate) fn label(&self) -> String {
        format!(
            "{} {} ({})",
            self.namespace.as_str(),
            self.resource_id,
            self.dimension.as_str()
        )
    }
}

/// An Application Auto Scaling scalable target's bounds and suspension flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AasTarget {
    pub min: i32,
    pub max: i32,
    pub dynamic_in_suspended: bool,
    pub dynamic_out_suspended: bool,
    pub scheduled_suspended: bool,
}

impl AasTarget {
    pub(crate) fn fully_suspended(&self) -> bool {
        self.dynamic_in_suspended && self.dynamic_out_suspended && self.scheduled_suspended
    }
}

/// A scaling policy or scheduled action: its name and kind (policy type or schedule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Named {
    pub name: String,
    pub detail: String,
}

/// The Application Auto Scaling that can act on one resource now. Suspended parts are not
/// conflicts: a scalable target with all three flags set, policies while dynamic scaling is
/// suspended both ways, scheduled actions while scheduled scaling is suspended.
pub(crate) fn aas_conflicts(
    key: &AasKey,
    target: Option<&AasTarget>,
    policies: &[Named],
    scheduled: &[Named],
) -> Vec<Conflict> {
    // Without a scalable target, policies and schedules cannot act (nor exist, on AWS).
    let Some(t) = target else {
        return vec![];
    };
    let resource = key.label();
    let conflict = |what: String| Conflict {
        resource: resource.clone(),
        what,
    };
    let mut out = Vec::new();
    if !t.fully_suspended() {
        out.push(conflict(format!(
            "Application Auto Scaling scalable target (min {}, max {})",
            t.min, t.max
        )));
    }
    if !(t.dynamic_in_suspended && t.dynamic_out_suspended) {
        out.extend(policies.iter().map(|p| {
            conflict(format!(
                "Application Auto Scaling policy {} ({})",
                p.name, p.detail
            ))
        }));
    }
    if !t.scheduled_suspended {
        out.extend(scheduled.iter().map(|s| {
            conflict(format!(
                "Application Auto Scaling scheduled action {} ({})",
                s.name, s.detail
            ))
        }));
    }
    out
}

/// An Auto Scaling group's scaling policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AsgPolicy {
    pub name: String,
    /// `TargetTrackingScaling`, `StepScaling`, `SimpleScaling` or `PredictiveScaling`.
    pub kind: String,
    pub enabled: bool,
    /// `ForecastOnly` or `ForecastAndScale`, for predictive policies.
    pub predictive_mode: Option<String>,
}

pub(crate) const TAKE_OVER_PROCESSES: [&str; 2] = ["AlarmNotification", "ScheduledActions"];

/// The Auto Scaling group's own scaling that can act now. Disabled policies, predictive
/// policies in `ForecastOnly` mode, and whatever a suspended process stops are left out.
pub(crate) fn asg_conflicts(
    group: &str,
    suspended: &[String],
    policies: &[AsgPolicy],
    scheduled: &[Named],
) -> Vec<Conflict> {
    let resource = format!("autoscaling group {group}");
    let is_suspended = |p: &str| suspended.iter().any(|s| s == p);
    let mut out = Vec::new();
    for p in policies.iter().filter(|p| p.enabled) {
        let what = if p.kind == "PredictiveScaling" {
            // Suspending AlarmNotification does not stop predictive scaling; its mode does.
            if p.predictive_mode.as_deref() == Some("ForecastOnly") {
                continue;
            }
            format!(
                "Auto Scaling policy {} (PredictiveScaling, ForecastAndScale: not stopped by \
                 suspending processes; set it to ForecastOnly or delete it)",
                p.name
            )
        } else if is_suspended("AlarmNotification") {
            continue;
        } else {
            format!("Auto Scaling policy {} ({})", p.name, p.kind)
        };
        out.push(Conflict {
            resource: resource.clone(),
            what,
        });
    }
    if !is_suspended("ScheduledActions") {
        out.extend(scheduled.iter().map(|s| Conflict {
            resource: resource.clone(),
            what: format!("Auto Scaling scheduled action {} ({})", s.name, s.detail),
        }));
    }
    out
}

/// The take-over processes not suspended yet.
pub(crate) fn processes_to_suspend(suspended: &[String]) -> Vec<&'static str> {
    TAKE_OVER_PROCESSES
        .into_iter()
        .filter(|p| !suspended.iter().any(|s| s == p))
        .collect()
}

type AasClient = aws_sdk_applicationautoscaling::Client;
type AsgClient = aws_sdk_autoscaling::Client;

/// The scalable target of a resource, if one is registered.
pub(crate) async fn aas_target(
    client: &AasClient,
    key: &AasKey,
) -> Result<Option<AasTarget>, AwsError> {
    let out = client
        .describe_scalable_targets()
        .service_namespace(key.namespace.clone())
        .resource_ids(&key.resource_id)
        .scalable_dimension(key.dimension.clone())
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_applicationautoscaling,
                e,
                "application-autoscaling",
                "DescribeScalableTargets",
                key.resource_id
            )
        })?;
    Ok(out
        .scalable_targets()
        .iter()
        .find(|t| t.resource_id() == key.resource_id && *t.scalable_dimension() == key.dimension)
        .map(|t| {
            let s = t.suspended_state();
            AasTarget {
                min: t.min_capacity(),
                max: t.max_capacity(),
                dynamic_in_suspended: s
                    .and_then(|s| s.dynamic_scaling_in_suspended())
                    .unwrap_or(false),
                dynamic_out_suspended: s
                    .and_then(|s| s.dynamic_scaling_out_suspended())
                    .unwrap_or(false),
                scheduled_suspended: s
                    .and_then(|s| s.scheduled_scaling_suspended())
                    .unwrap_or(false),
            }
        }))
}

async fn aas_policies(client: &AasClient, key: &AasKey) -> Result<Vec<Named>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_scaling_policies()
            .service_namespace(key.namespace.clone())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension.clone())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                aws_error!(
                    aws_sdk_applicationautoscaling,
                    e,
                    "application-autoscaling",
                    "DescribeScalingPolicies",
                    key.resource_id
                )
            })?;
        out.extend(page.scaling_policies().iter().map(|p| Named {
            name: p.policy_name().to_string(),
            detail: p.policy_type().as_str().to_string(),
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn aas_scheduled(client: &AasClient, key: &AasKey) -> Result<Vec<Named>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_scheduled_actions()
            .service_namespace(key.namespace.clone())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension.clone())
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                aws_error!(
                    aws_sdk_applicationautoscaling,
                    e,
                    "application-autoscaling",
                    "DescribeScheduledActions",
                    key.resource_id
                )
            })?;
        out.extend(page.scheduled_actions().iter().map(|s| Named {
            name: s.scheduled_action_name().to_string(),
            detail: s.schedule().to_string(),
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// Application Auto Scaling's scaling of a resource.
pub(crate) async fn find_aas(client: &AasClient, key: &AasKey) -> Result<Vec<Conflict>, AwsError> {
    let target = aas_target(client, key).await?;
    let policies = aas_policies(client, key).await?;
    let scheduled = aas_scheduled(client, key).await?;
    Ok(aas_conflicts(key, target.as_ref(), &policies, &scheduled))
}

/// Suspends a registered scalable target's dynamic and scheduled scaling.
pub(crate) async fn take_over_aas(
    client: &AasClient,
    key: &AasKey,
) -> Result<Vec<String>, AwsError> {
    let Some(target) = aas_target(client, key).await? else {
        return Ok(vec![]);
    };
    if target.fully_suspended() {
        return Ok(vec![]);
    }
    client
        .register_scalable_target()
        .service_namespace(key.namespace.clone())
        .resource_id(&key.resource_id)
        .scalable_dimension(key.dimension.clone())
        .suspended_state(
            SuspendedState::builder()
                .dynamic_scaling_in_suspended(true)
                .dynamic_scaling_out_suspended(true)
                .scheduled_scaling_suspended(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_applicationautoscaling,
                e,
                "application-autoscaling",
                "RegisterScalableTarget",
                key.resource_id
            )
        })?;
    Ok(vec![format!(
        "suspended dynamic and scheduled scaling of the Application Auto Scaling target {}",
        key.label()
    )])
}

async fn asg_policies(client: &AsgClient, group: &str) -> Result<Vec<AsgPolicy>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_policies()
            .auto_scaling_group_name(group)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                aws_error!(
                    aws_sdk_autoscaling,
                    e,
                    "autoscaling",
                    "DescribePolicies",
                    group
                )
            })?;
        out.extend(page.scaling_policies().iter().map(|p| {
            AsgPolicy {
                name: p.policy_name().unwrap_or_default().to_string(),
                kind: p.policy_type().unwrap_or("SimpleScaling").to_string(),
                enabled: p.enabled().unwrap_or(true),
                predictive_mode: p
                    .predictive_scaling_configuration()
                    .and_then(|c| c.mode())
                    .map(|m| m.as_str().to_string()),
            }
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

async fn asg_scheduled(client: &AsgClient, group: &str) -> Result<Vec<Named>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_scheduled_actions()
            .auto_scaling_group_name(group)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                aws_error!(
                    aws_sdk_autoscaling,
                    e,
                    "autoscaling",
                    "DescribeScheduledActions",
                    group
                )
            })?;
        out.extend(page.scheduled_update_group_actions().iter().map(|s| {
            Named {
                name: s.scheduled_action_name().unwrap_or_default().to_string(),
                detail: s
                    .recurrence()
                    .map(str::to_string)
                    .or_else(|| s.start_time().map(|t| format!("once at {t}")))
                    .unwrap_or_else(|| "one-time".into()),
            }
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

/// An Auto Scaling group's own scaling.
pub(crate) async fn find_asg(client: &AsgClient, group: &str) -> Result<Vec<Conflict>, AwsError> {
    let g = asg::describe_one(client, group).await?;
    let policies = asg_policies(client, group).await?;
    let scheduled = asg_scheduled(client, group).await?;
    Ok(asg_conflicts(group, &g.suspended, &policies, &scheduled))
}

/// Suspends the group's alarm-driven and scheduled scaling.
pub(crate) async fn take_over_asg(
    client: &AsgClient,
    group: &str,
) -> Result<Vec<String>, AwsError> {
    let g = asg::describe_one(client, group).await?;
    let missing = processes_to_suspend(&g.suspended);
    if missing.is_empty() {
        return Ok(vec![]);
    }
    client
        .suspend_processes()
        .auto_scaling_group_name(group)
        .set_scaling_processes(Some(missing.iter().map(|p| p.to_string()).collect()))
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_autoscaling,
                e,
                "autoscaling",
                "SuspendProcesses",
                group
            )
        })?;
    Ok(vec![format!(
        "suspended process(es) {} of Auto Scaling group {group}",
        missing.join(", ")
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, detail: &str) -> Named {
        Named {
            name: name.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn aas_keys_per_resource_kind() {
        let ecs = AasKey::of(&Resource::EcsService {
            cluster: "shop".into(),
            service: "api".into(),
        })
        .unwrap();
        assert_eq!(
            ecs.label(),
            "ecs service/shop/api (ecs:service:DesiredCount)"
        );
        let rds = AasKey::of(&Resource::AuroraReaders {
            db_cluster: "orders".into(),
            reader_prefix: "orders-capstan".into(),
            instance_class: None,
        })
        .unwrap();
        assert_eq!(
            rds.label(),
            "rds cluster:orders (rds:cluster:ReadReplicaCount)"
        );
        assert_eq!(AasKey::of(&Resource::Asg { name: "web".into() }), None);
    }

    #[test]
    fn aas_conflicts_until_suspended() {
        let key = AasKey::of(&Resource::EcsService {
            cluster: "shop".into(),
            service: "api".into(),
        })
        .unwrap();
        let policies = [named("cpu", "TargetTrackingScaling")];
        let scheduled = [named("night", "cron(0 22 * * ? *)")];
        assert!(aas_conflicts(&key, None, &policies, &scheduled).is_empty());

        let mut t = AasTarget {
            min: 1,
            max: 10,
            ..AasTarget::default()
        };
        let what = |t: &AasTarget| -> Vec<String> {
            aas_conflicts(&key, Some(t), &policies, &scheduled)
                .into_iter()
                .map(|c| {
                    assert_eq!(
                        c.resource,
                        "ecs service/shop/api (ecs:service:DesiredCount)"
                    );
                    c.what
                })
                .collect()
        };
        assert_eq!(
            what(&t),
            vec![
                "Application Auto Scaling scalable target (min 1, max 10)",
                "Application Auto Scaling policy cpu (TargetTrackingScaling)",
                "Application Auto Scaling scheduled action night (cron(0 22 * * ? *))",
            ]
        );
        // Only scale-in suspended: the policy still scales out.
        t.dynamic_in_suspended = true;
        assert_eq!(what(&t).len(), 3);
        t.dynamic_out_suspended = true;
        assert_eq!(
            what(&t),
            vec![
                "Application Auto Scaling scalable target (min 1, max 10)",
                "Application Auto Scaling scheduled action night (cron(0 22 * * ? *))",
            ]
        );
        t.scheduled_suspended = true;
        assert!(what(&t).is_empty());
    }

    #[test]
    fn asg_conflicts_follow_suspended_processes() {
        let policy = |name: &str, kind: &str, enabled: bool, mode: Option<&str>| AsgPolicy {
            name: name.into(),
            kind: kind.into(),
            enabled,
            predictive_mode: mode.map(str::to_string),
        };
        let policies = vec![
            policy("cpu", "TargetTrackingScaling", true, None),
            policy("old", "SimpleScaling", false, None),
            policy(
                "forecast",
                "PredictiveScaling",
                true,
                Some("ForecastAndScale"),
            ),
            policy("watch", "PredictiveScaling", true, Some("ForecastOnly")),
        ];
        let scheduled = [named("night", "0 22 * * *")];
        let what = |suspended: &[String]| -> Vec<String> {
            asg_conflicts("web", suspended, &policies, &scheduled)
                .into_iter()
                .map(|c| {
                    assert_eq!(c.resource, "autoscaling group web");
                    c.what
                })
                .collect()
        };
        let all = what(&[]);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], "Auto Scaling policy cpu (TargetTrackingScaling)");
        assert!(all[1].starts_with("Auto Scaling policy forecast (PredictiveScaling"));
        assert_eq!(all[2], "Auto Scaling scheduled action night (0 22 * * *)");

        assert_eq!(what(&["ScheduledActions".into()]).len(), 2);
        // The ForecastAndScale policy is not stopped by suspended processes.
        let left = what(&["AlarmNotification".into(), "ScheduledActions".into()]);
        assert_eq!(left.len(), 1);
        assert!(left[0].contains("set it to ForecastOnly or delete it"));
    }

    #[test]
    fn only_missing_processes_are_suspended() {
        assert_eq!(
            processes_to_suspend(&[]),
            vec!["AlarmNotification", "ScheduledActions"]
        );
        assert_eq!(
            processes_to_suspend(&["ScheduledActions".into(), "Launch".into()]),
            vec!["AlarmNotification"]
        );
        assert!(
            processes_to_suspend(&["AlarmNotification".into(), "ScheduledActions".into()])
                .is_empty()
        );
    }
}
