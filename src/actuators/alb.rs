//! ALB target groups: healthy targets as ready capacity, and the draining step of an Auto
//! Scaling group's scale-in (deregister, then wait out the deregistration delay).

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use aws_sdk_elasticloadbalancingv2::Client;

use crate::aws::AwsError;
use crate::aws_error;

/// What a target group reports about one of its targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetHealth {
    /// Instance id, IP address or Lambda ARN.
    pub id: String,
    /// `healthy`, `initial`, `draining`, `unhealthy`, `unused`, ...
    pub state: String,
}

/// The ids of the targets that receive traffic and pass their health checks.
pub(crate) fn healthy_ids(targets: &[TargetHealth]) -> Vec<String> {
    let mut ids: Vec<String> = targets
        .iter()
        .filter(|t| t.state == "healthy")
        .map(|t| t.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// AWS's default deregistration delay, used when the attribute is absent.
pub(crate) const DEFAULT_DEREGISTRATION_DELAY_SECS: u64 = 300;

/// The `deregistration_delay.timeout_seconds` attribute of a target group.
pub(crate) fn deregistration_delay_secs<'a>(
    attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> u64 {
    attributes
        .into_iter()
        .find(|(k, _)| *k == "deregistration_delay.timeout_seconds")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(DEFAULT_DEREGISTRATION_DELAY_SECS)
}

/// `DescribeTargetHealth` of one target group.
pub(crate) async fn target_health(
    client: &Client,
    target_group: &str,
) -> Result<Vec<TargetHealth>, AwsError> {
    crate::ratelimit::acquire("DescribeTargetHealth").await;
    let out = client
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_elasticloadbalancingv2,
                e,
                "elasticloadbalancing",
                "DescribeTargetHealth",
                target_group
            )
        })?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let id = d.target()?.id()?.to_string();
            let state = d
                .target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            Some(TargetHealth { id, state })
        })
        .collect())
}

/// The deregistration delay of a target group, in seconds.
pub(crate) async fn deregistration_delay(
    client: &Client,
    target_group: &str,
) -> Result<u64, AwsError> {
    let out = client
        .describe_target_group_attributes()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_elasticloadbalancingv2,
                e,
                "elasticloadbalancing",
                "DescribeTargetGroupAttributes",
                target_group
            )
        })?;
    Ok(deregistration_delay_secs(
        out.attributes()
            .iter()
            .filter_map(|a| Some((a.key()?, a.value()?))),
    ))
}

fn descriptions(ids: &[String]) -> Vec<TargetDescription> {
    ids.iter()
        .map(|id| TargetDescription::builder().id(id).build())
        .collect()
}

/// Stops sending new requests to the targets; in-flight ones finish within the delay.
pub(crate) async fn deregister(
    client: &Client,
    target_group: &str,
    ids: &[String],
) -> Result<(), AwsError> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .deregister_targets()
        .target_group_arn(target_group)
        .set_targets(Some(descriptions(ids)))
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_elasticloadbalancingv2,
                e,
                "elasticloadbalancing",
                "DeregisterTargets",
                target_group
            )
        })?;
    Ok(())
}

/// Puts targets back into service (a drain cancelled by a scale-out).
pub(crate) async fn register(
    client: &Client,
    target_group: &str,
    ids: &[String],
) -> Result<(), AwsError> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .register_targets()
        .target_group_arn(target_group)
        .set_targets(Some(descriptions(ids)))
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_elasticloadbalancingv2,
                e,
                "elasticloadbalancing",
                "RegisterTargets",
                target_group
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, state: &str) -> TargetHealth {
        TargetHealth {
            id: id.into(),
            state: state.into(),
        }
    }

    #[test]
    fn only_healthy_targets_are_ready() {
        let targets = [
            t("i-3", "healthy"),
            t("i-1", "healthy"),
            t("i-2", "initial"),
            t("i-4", "draining"),
            t("i-5", "unhealthy"),
            t("i-6", "unused"),
            t("i-1", "healthy"),
        ];
        assert_eq!(healthy_ids(&targets), vec!["i-1", "i-3"]);
        assert!(healthy_ids(&[]).is_empty());
    }

    #[test]
    fn deregistration_delay_from_attributes() {
        let attrs = [
            ("stickiness.enabled", "false"),
            ("deregistration_delay.timeout_seconds", "30"),
        ];
        assert_eq!(deregistration_delay_secs(attrs), 30);
        assert_eq!(
            deregistration_delay_secs([("deregistration_delay.timeout_seconds", "0")]),
            0
        );
        assert_eq!(
            deregistration_delay_secs([("stickiness.enabled", "false")]),
            300
        );
        assert_eq!(
            deregistration_delay_secs([("deregistration_delay.timeout_seconds", "soon")]),
            300
        );
    }
}
