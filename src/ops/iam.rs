//! `capstan iam-policy`: the least-privilege IAM policy of the daemon for exactly the
//! configured resources (pure: config in, policy document out).
//!
//! Which actions support resource-level permissions follows AWS's Service Authorization
//! Reference (<https://docs.aws.amazon.com/service-authorization/latest/reference/>, the
//! pages `list_amazonecs`, `list_amazonec2autoscaling`, `list_amazonrds`,
//! `list_amazonsqs`, `list_amazondynamodb`, `list_amazoncloudwatch`,
//! `list_awselasticloadbalancingv2` and `list_applicationautoscaling`):
//!
//! - scoped to resource ARNs: `ecs:DescribeServices`, `ecs:UpdateService` (service);
//!   `autoscaling:SetDesiredCapacity`, `TerminateInstanceInAutoScalingGroup`,
//!   `SuspendProcesses` (autoScalingGroup; the group id part of the ARN is a wildcard);
//!   `rds:*` (cluster, db and the default groups a new instance is created with);
//!   `sqs:GetQueueUrl`, `sqs:GetQueueAttributes` (queue); `dynamodb:*Item` (table);
//!   `elasticloadbalancing:RegisterTargets`, `DeregisterTargets` (targetgroup);
//! - `Resource: "*"` because the action has no resource type: `cloudwatch:GetMetricData`,
//!   `cloudwatch:PutMetricData` (narrowed by the `cloudwatch:namespace` condition),
//!   `autoscaling:Describe*`, `elasticloadbalancing:Describe*`,
//!   `application-autoscaling:Describe*` and `RegisterScalableTarget` (its resource type is
//!   the scalable target's ARN, whose id AWS generates, so it cannot be named in advance).
//!
//! `DescribeDBClusters` names its cluster (one call per cluster), so it is granted on the
//! cluster's ARN; `DescribeDBInstances` filters by cluster rather than naming an instance,
//! so it is evaluated against `db:*` of the account and region. Instances capstan creates
//! are named `<reader_prefix>-N` and tagged `capstan:managed = true` and
//! `capstan:target = <target>`: creating is allowed only for such names with exactly these
//! tags (`aws:RequestTag/...`, `aws:TagKeys`) and, with `reader_instance_class` set, only of
//! that class (`rds:DatabaseClass`); deleting only for such names carrying both tags
//! (`aws:ResourceTag/...`). The lease table's items are limited to this deployment's keys
//! (`dynamodb:LeadingKeys`), so deployments sharing a table cannot write each other's
//! lease or histories. An Auto Scaling group drains from every target
//! group attached to it (known only at run time): with `alb_target_group` set, registering
//! and deregistering is allowed on that group only, otherwise on any target group of the
//! account and region.
//!
//! Account, region and partition are strings so that the same code yields concrete ARNs
//! (`--account`, `--region`) or CloudFormation placeholders (`${AWS::AccountId}`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::actuators::aurora::{MANAGED_TAG, TARGET_TAG};
use crate::config::{Config, MetricSource, MetricsSink, Resource};
use crate::sources::sqs::is_url;

/// Where the ARNs point: partition, region and account (concrete values, `*`, or
/// CloudFormation `${AWS::...}` placeholders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnScope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl ArnScope {
    /// For CloudFormation `Fn::Sub` (the region is the config's when it names one).
    pub fn cloudformation(cfg: &Config) -> Self {
        ArnScope {
            partition: "${AWS::Partition}".into(),
            region: cfg
                .global
                .region
                .as_deref()
                .map(sub_escape)
                .unwrap_or_else(|| "${AWS::Region}".into()),
            account: "${AWS::AccountId}".into(),
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }
}

/// Escapes `${` for CloudFormation `Fn::Sub` (written `${!`).
pub fn sub_escape(s: &str) -> String {
    s.replace("${", "${!")
}

/// The conditions of a grant: (operator, key, values), sorted; all must hold. Empty for
/// none.
type Cond = Vec<(&'static str, String, Vec<String>)>;

/// One permission: an action on a resource, under conditions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    action: &'static str,
    resource: String,
    condition: Cond,
}

fn cond(mut c: Cond) -> Cond {
    c.sort();
    c
}

/// Escapes the characters IAM's `StringLike` reads as wildcards or variables in a literal
/// part of a pattern (`*`, `?`, `$` become `${*}`, `${?}`, `${$}`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            '$' => out.push_str("${$}"),
            c => out.push(c),
        }
    }
    out
}

/// Every permission the daemon needs for this config. `escape` applies to names taken from
/// the config (for `Fn::Sub`).
fn grants(cfg: &Config, scope: &ArnScope, escape: &dyn Fn(&str) -> String) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let any = || "*".to_string();
    let takeover = |t: &crate::config::Target| t.takeover;
    for t in &cfg.targets {
        match &t.resource {
            Resource::EcsService { cluster, service } => {
                let arn = scope.arn(
                    "ecs",
                    &format!("service/{}/{}", escape(cluster), escape(service)),
                );
                add(&mut out, "ecs:DescribeServices", arn.clone());
                add(&mut out, "ecs:UpdateService", arn);
                aas_reads(&mut out);
                if takeover(t) {
                    add(
                        &mut out,
                        "application-autoscaling:RegisterScalableTarget",
                        any(),
                    );
                }
                if t.alb_target_group.is_some() {
                    // Healthy task count only.
                    add(&mut out, "elasticloadbalancing:DescribeTargetHealth", any());
                }
            }
            Resource::Asg { name } => {
                let arn = scope.arn(
                    "autoscaling",
                    &format!("autoScalingGroup:*:autoScalingGroupName/{}", escape(name)),
                );
                add(&mut out, "autoscaling:DescribeAutoScalingGroups", any());
                add(&mut out, "autoscaling:DescribePolicies", any());
                add(&mut out, "autoscaling:DescribeScheduledActions", any());
                add(&mut out, "autoscaling:SetDesiredCapacity", arn.clone());
                add(
                    &mut out,
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                    arn.clone(),
                );
                if takeover(t) {
                    add(&mut out, "autoscaling:SuspendProcesses", arn);
                }
                add(&mut out, "elasticloadbalancing:DescribeTargetHealth", any());
                add(
                    &mut out,
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    any(),
                );
                let tg = match &t.alb_target_group {
                    Some(arn) => escape(arn),
                    None => scope.arn("elasticloadbalancing", "targetgroup/*"),
                };
                add(
                    &mut out,
                    "elasticloadbalancing:DeregisterTargets",
                    tg.clone(),
                );
                add(&mut out, "elasticloadbalancing:RegisterTargets", tg);
            }
            Resource::AuroraReaders {
                db_cluster,
                reader_prefix,
                instance_class,
            } => {
                let cluster = scope.arn("rds", &format!("cluster:{}", escape(db_cluster)));
                let readers = scope.arn("rds", &format!("db:{}-*", escape(reader_prefix)));
                // Described by identifier, one cluster a call, so the cluster can be named.
                add(&mut out, "rds:DescribeDBClusters", cluster.clone());
                add(
                    &mut out,
                    "rds:DescribeDBInstances",
                    scope.arn("rds", "db:*"),
                );
                // A new reader carries exactly capstan's two tags, for this target.
                let request_tags = || {
                    vec![
                        (
                            "StringEquals",
                            format!("aws:RequestTag/{MANAGED_TAG}"),
                            vec!["true".to_string()],
                        ),
                        (
                            "StringEquals",
                            format!("aws:RequestTag/{TARGET_TAG}"),
                            vec![escape(&t.name)],
                        ),
                        (
                            "ForAllValues:StringEquals",
                            "aws:TagKeys".to_string(),
                            vec![MANAGED_TAG.to_string(), TARGET_TAG.to_string()],
                        ),
                    ]
                };
                // The instance itself: named with the prefix, tagged, and of the configured
                // class (without one a reader takes the writer's class, unknown here).
                let mut create = request_tags();
                if let Some(class) = instance_class {
                    create.push((
                        "StringEquals",
                        "rds:DatabaseClass".to_string(),
                        vec![escape(class)],
                    ));
                }
                out.insert(Grant {
                    action: "rds:CreateDBInstance",
                    resource: readers.clone(),
                    condition: cond(create),
                });
                // The resources it is created in (the request's tags and class are the
                // instance's; these are only named).
                add(&mut out, "rds:CreateDBInstance", cluster);
                for group in ["pg:*", "og:*", "subgrp:*"] {
                    add(&mut out, "rds:CreateDBInstance", scope.arn("rds", group));
                }
                // Tagging on create is authorized as AddTagsToResource with the same tags.
                out.insert(Grant {
                    action: "rds:AddTagsToResource",
                    resource: readers.clone(),
                    condition: cond(request_tags()),
                });
                aas_reads(&mut out);
                if takeover(t) {
                    add(
                        &mut out,
                        "application-autoscaling:RegisterScalableTarget",
                        any(),
                    );
                }
                // Only readers capstan created for this target.
                out.insert(Grant {
                    action: "rds:DeleteDBInstance",
                    resource: readers,
                    condition: cond(vec![
                        (
                            "StringEquals",
                            format!("aws:ResourceTag/{MANAGED_TAG}"),
                            vec!["true".to_string()],
                        ),
                        (
                            "StringEquals",
                            format!("aws:ResourceTag/{TARGET_TAG}"),
                            vec![escape(&t.name)],
                        ),
                    ]),
                });
            }
        }
        for m in &t.metrics {
            match &m.source {
                MetricSource::Cloudwatch { .. } | MetricSource::Expression { .. } => {
                    add(&mut out, "cloudwatch:GetMetricData", any());
                }
                MetricSource::Sqs { queue, .. } => {
                    let arn = queue_arn(queue, scope, escape);
                    if !is_url(queue) {
                        add(&mut out, "sqs:GetQueueUrl", arn.clone());
                    }
                    add(&mut out, "sqs:GetQueueAttributes", arn);
                }
            }
        }
    }
    if cfg.global.lease.enabled {
        let table = scope.arn(
            "dynamodb",
            &format!("table/{}", escape(&cfg.global.lease.table)),
        );
        // Only this deployment's items of a table other deployments may share: its lease
        // (`lease#<name>`, each shard's `lease#<name>-shard-<i>-of-<n>`) and its histories
        // (`history#<name>#<target>`; see controller::lease and controller::state).
        let name = like_escape(&cfg.global.lease.name);
        let lease_key = match &cfg.global.shard {
            Some(s) => format!("lease#{name}-shard-*-of-{}", s.count),
            None => format!("lease#{name}"),
        };
        let keys = vec![escape(&lease_key), escape(&format!("history#{name}#*"))];
        for action in [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        ] {
            out.insert(Grant {
                action,
                resource: table.clone(),
                condition: vec![(
                    "ForAllValues:StringLike",
                    "dynamodb:LeadingKeys".to_string(),
                    keys.clone(),
                )],
            });
        }
    }
    if cfg.global.metrics == MetricsSink::Cloudwatch {
        out.insert(Grant {
            action: "cloudwatch:PutMetricData",
            resource: any(),
            condition: vec![(
                "StringEquals",
                "cloudwatch:namespace".into(),
                vec![escape(&cfg.global.metrics_namespace)],
            )],
        });
    }
    out
}

fn add(out: &mut BTreeSet<Grant>, action: &'static str, resource: String) {
    out.insert(Grant {
        action,
        resource,
        condition: Vec::new(),
    });
}

fn aas_reads(out: &mut BTreeSet<Grant>) {
    for a in [
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:DescribeScheduledActions",
    ] {
        add(out, a, "*".into());
    }
}

/// A queue's ARN from its name or URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
fn queue_arn(queue: &str, scope: &ArnScope, escape: &dyn Fn(&str) -> String) -> String {
    if !is_url(queue) {
        return scope.arn("sqs", &escape(queue));
    }
    let rest = queue.split_once("://").map(|(_, r)| r).unwrap_or(queue);
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or("");
    let account = parts.next().unwrap_or("*");
    let name = parts.next().unwrap_or("*");
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once(".amazonaws.com"))
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| scope.region.clone());
    format!(
        "arn:{}:sqs:{region}:{}:{}",
        scope.partition,
        escape(account),
        escape(name)
    )
}

/// The policy document: one statement per (condition, resources) group of actions, sorted,
/// so the output is stable.
pub fn policy(cfg: &Config, scope: &ArnScope) -> Value {
    document(grants(cfg, scope, &|s: &str| s.to_string()))
}

/// The same policy with config names escaped for `Fn::Sub`; every string holding `${`
/// becomes `{"Fn::Sub": ...}` (for the CloudFormation template).
pub fn policy_for_cloudformation(cfg: &Config) -> Value {
    let doc = document(grants(cfg, &ArnScope::cloudformation(cfg), &sub_escape));
    wrap_subs(doc)
}

fn wrap_subs(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("${") => json!({ "Fn::Sub": s }),
        Value::Array(a) => Value::Array(a.into_iter().map(wrap_subs).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, wrap_subs(v))).collect()),
        other => other,
    }
}

fn document(grants: BTreeSet<Grant>) -> Value {
    // action -> (condition, resources)
    let mut per_action: BTreeMap<(&'static str, Cond), BTreeSet<String>> = BTreeMap::new();
    for g in grants {
        per_action
            .entry((g.action, g.condition))
            .or_default()
            .insert(g.resource);
    }
    // (condition, resources) -> actions
    let mut groups: BTreeMap<(Cond, Vec<String>), Vec<&'static str>> = BTreeMap::new();
    for ((action, cond), resources) in per_action {
        groups
            .entry((cond, resources.into_iter().collect()))
            .or_default()
            .push(action);
    }
    let mut statements: Vec<Value> = groups
        .into_iter()
        .map(|((cond, resources), actions)| {
            let mut s = json!({
                "Effect": "Allow",
                "Action": actions,
                "Resource": if resources.len() == 1 { json!(resources[0]) } else { json!(resources) },
            });
            if !cond.is_empty() {
                let mut c = serde_json::Map::new();
                for (op, key, values) in cond {
                    let value = if values.len() == 1 {
                        json!(values[0])
                    } else {
                        json!(values)
                    };
                    c.entry(op)
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .expect("an operator holds an object")
                        .insert(key, value);
                }
                s["Condition"] = Value::Object(c);
            }
            s
        })
        .collect();
    // Readable order: by first action.
    statements.sort_by(|a, b| a["Action"][0].as_str().cmp(&b["Action"][0].as_str()));
    for (i, s) in statements.iter_mut().enumerate() {
        let service = s["Action"][0]
            .as_str()
            .and_then(|a| a.split(':').next())
            .unwrap_or("")
            .replace('-', " ");
        let sid: String = service
            .split(' ')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        s.as_object_mut()
            .expect("statement is an object")
            .insert("Sid".into(), json!(format!("{sid}{i}")));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Action -> resources of a policy document (conditions ignored), for tests and checks.
pub fn actions_and_resources(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in doc["Statement"].as_array().into_iter().flatten() {
        let resources: Vec<String> = match &s["Resource"] {
            Value::Array(a) => a.iter().map(|r| r.to_string()).collect(),
            r => vec![r.to_string()],
        };
        for a in s["Action"].as_array().into_iter().flatten() {
            out.entry(a.as_str().unwrap_or_default().to_string())
                .or_default()
                .extend(
                    resources
                        .iter()
                        .map(|r| r.trim_matches('"').replace("\\\"", "\"")),
                );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn scope() -> ArnScope {
        ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    const OFF: &str = "[global]\nmetrics = \"off\"\n";

    fn policy_of(toml: &str) -> BTreeMap<String, BTreeSet<String>> {
        let cfg = config::from_str("t.toml", toml).unwrap_or_else(|d| panic!("{d:?}"));
        actions_and_resources(&policy(&cfg, &scope()))
    }

    fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(a, rs)| (a.to_string(), rs.iter().map(|r| r.to_string()).collect()))
            .collect()
    }

    const AAS: [&str; 3] = [
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:DescribeScheduledActions",
    ];

    #[test]
    fn ecs_service_with_cloudwatch_metric() {
        let got = policy_of(&format!(
            "{OFF}[[target]]\nname = \"api\"\nkind = \"ecs_service\"\ncluster = \"shop\"\nservice = \"api\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n"
        ));
        let svc = "arn:aws:ecs:us-east-1:123456789012:service/shop/api";
        let mut want = expect(&[
            ("ecs:DescribeServices", &[svc]),
            ("ecs:UpdateService", &[svc]),
            ("cloudwatch:GetMetricData", &["*"]),
        ]);
        want.extend(expect(&AAS.map(|a| (a, &["*"][..]))));
        assert_eq!(got, want);
    }

    #[test]
    fn ecs_service_on_sqs_with_lease_metrics_and_takeover() {
        let got = policy_of(
            "[global]\nmetrics = \"cloudwatch\"\n[global.lease]\nenabled = true\ntable = \"locks\"\n[[target]]\nname = \"w\"\nkind = \"ecs_service\"\ncluster = \"shop\"\nservice = \"workers\"\nmin = 0\nmax = 4\ntakeover = true\n[[target.metric]]\nname = \"q\"\nsource = \"sqs\"\nqueue = \"orders\"\n[[target.metric]]\nname = \"q2\"\nsource = \"sqs\"\nqueue = \"https://sqs.eu-west-1.amazonaws.com/210987654321/returns\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"q\"\ntarget_per_unit = 10\n",
        );
        let svc = "arn:aws:ecs:us-east-1:123456789012:service/shop/workers";
        let table = "arn:aws:dynamodb:us-east-1:123456789012:table/locks";
        let orders = "arn:aws:sqs:us-east-1:123456789012:orders";
        let returns = "arn:aws:sqs:eu-west-1:210987654321:returns";
        let mut want = expect(&[
            ("ecs:DescribeServices", &[svc]),
            ("ecs:UpdateService", &[svc]),
            ("application-autoscaling:RegisterScalableTarget", &["*"]),
            ("sqs:GetQueueUrl", &[orders]),
            ("sqs:GetQueueAttributes", &[orders, returns]),
            ("dynamodb:GetItem", &[table]),
            ("dynamodb:PutItem", &[table]),
            ("dynamodb:UpdateItem", &[table]),
            ("cloudwatch:PutMetricData", &["*"]),
        ]);
        want.extend(expect(&AAS.map(|a| (a, &["*"][..]))));
        assert_eq!(got, want);
        // PutMetricData only for capstan's namespace.
        let cfg = config::from_str(
            "t.toml",
            "[global]\nmetrics_namespace = \"Shop/Capstan\"\n[[target]]\nname = \"w\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"s\"\nmin = 0\nmax = 4\n[[target.metric]]\nname = \"q\"\nsource = \"sqs\"\nqueue = \"orders\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"q\"\ntarget_per_unit = 10\n",
        )
        .unwrap();
        let doc = policy(&cfg, &scope());
        let put = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"][0] == "cloudwatch:PutMetricData")
            .unwrap();
        assert_eq!(
            put["Condition"],
            json!({"StringEquals": {"cloudwatch:namespace": "Shop/Capstan"}})
        );
        assert_eq!(put["Action"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn asg_with_and_without_a_target_group() {
        let asg = |tg: &str, takeover: bool| {
            format!(
                "{OFF}[[target]]\nname = \"s\"\nkind = \"asg\"\nasg_name = \"search\"\n{tg}min = 1\nmax = 4\ntakeover = {takeover}\n[[target.metric]]\nname = \"cpu\"\nsource = \"cloudwatch\"\nnamespace = \"AWS/EC2\"\nmetric_name = \"CPUUtilization\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n"
            )
        };
        let group =
            "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/search";
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/search/abc";
        let common = |tgs: &'static str| {
            expect(&[
                ("autoscaling:DescribeAutoScalingGroups", &["*"]),
                ("autoscaling:DescribePolicies", &["*"]),
                ("autoscaling:DescribeScheduledActions", &["*"]),
                ("autoscaling:SetDesiredCapacity", &[group]),
                ("autoscaling:TerminateInstanceInAutoScalingGroup", &[group]),
                ("elasticloadbalancing:DescribeTargetHealth", &["*"]),
                ("elasticloadbalancing:DescribeTargetGroupAttributes", &["*"]),
                ("elasticloadbalancing:DeregisterTargets", &[tgs]),
                ("elasticloadbalancing:RegisterTargets", &[tgs]),
                ("cloudwatch:GetMetricData", &["*"]),
            ])
        };
        assert_eq!(
            policy_of(&asg(&format!("alb_target_group = \"{tg}\"\n"), false)),
            common(tg)
        );
        let mut want = common("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/*");
        want.extend(expect(&[("autoscaling:SuspendProcesses", &[group])]));
        assert_eq!(policy_of(&asg("", true)), want);
    }

    #[test]
    fn aurora_readers() {
        let got = policy_of(&format!(
            "{OFF}[[target]]\nname = \"db\"\nkind = \"aurora_readers\"\ndb_cluster = \"catalog\"\nreader_prefix = \"catalog-capstan\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"aurora_reader_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n"
        ));
        let rds = |r: &str| format!("arn:aws:rds:us-east-1:123456789012:{r}");
        let readers = rds("db:catalog-capstan-*");
        let mut want: BTreeMap<String, BTreeSet<String>> = [
            ("rds:DescribeDBClusters", vec![rds("cluster:catalog")]),
            ("rds:DescribeDBInstances", vec![rds("db:*")]),
            (
                "rds:CreateDBInstance",
                vec![
                    readers.clone(),
                    rds("cluster:catalog"),
                    rds("pg:*"),
                    rds("og:*"),
                    rds("subgrp:*"),
                ],
            ),
            ("rds:AddTagsToResource", vec![readers.clone()]),
            ("rds:DeleteDBInstance", vec![readers]),
            ("cloudwatch:GetMetricData", vec!["*".into()]),
        ]
        .into_iter()
        .map(|(a, r)| (a.to_string(), r.into_iter().collect()))
        .collect();
        want.extend(expect(&AAS.map(|a| (a, &["*"][..]))));
        assert_eq!(got, want);
        let cfg = config::from_str("t.toml", &format!("{OFF}[[target]]\nname = \"db\"\nkind = \"aurora_readers\"\ndb_cluster = \"catalog\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"aurora_reader_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n")).unwrap();
        let doc = policy(&cfg, &scope());
        let delete = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"][0] == "rds:DeleteDBInstance")
            .unwrap();
        assert_eq!(
            delete["Condition"],
            json!({"StringEquals": {
                "aws:ResourceTag/capstan:managed": "true",
                "aws:ResourceTag/capstan:target": "db",
            }})
        );
        // Take-over adds exactly RegisterScalableTarget.
        let plain = policy_of(&format!("{OFF}[[target]]\nname = \"db\"\nkind = \"aurora_readers\"\ndb_cluster = \"catalog\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"aurora_reader_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n"));
        let taken = policy_of(&format!("{OFF}[[target]]\nname = \"db\"\nkind = \"aurora_readers\"\ndb_cluster = \"catalog\"\nmin = 1\nmax = 4\ntakeover = true\n[[target.metric]]\nname = \"cpu\"\nsource = \"aurora_reader_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n"));
        let added: Vec<&String> = taken.keys().filter(|k| !plain.contains_key(*k)).collect();
        assert_eq!(added, ["application-autoscaling:RegisterScalableTarget"]);
        assert_eq!(taken.len(), plain.len() + 1);
    }

    #[test]
    fn cloudformation_policy_uses_placeholders_and_escapes_names() {
        let cfg = config::from_str(
            "t.toml",
            &format!("{OFF}[[target]]\nname = \"s\"\nkind = \"asg\"\nasg_name = \"odd${{name}}\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"cloudwatch\"\nnamespace = \"AWS/EC2\"\nmetric_name = \"CPUUtilization\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n"),
        )
        .unwrap();
        let doc = policy_for_cloudformation(&cfg);
        let text = doc.to_string();
        assert!(text.contains(r#"{"Fn::Sub":"arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/odd${!name}"}"#), "{text}");
        assert!(text.contains(r#""Resource":"*""#));
    }

    /// The statements granting `action` on `resource`.
    fn statements_for<'a>(doc: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Action"].as_array().unwrap().iter().any(|a| a == action))
            .filter(|s| match &s["Resource"] {
                Value::Array(rs) => rs.iter().any(|r| r == resource),
                r => r == resource,
            })
            .collect()
    }

    fn aurora(class: &str) -> Config {
        config::from_str("t.toml", &format!("{OFF}[[target]]\nname = \"db\"\nkind = \"aurora_readers\"\ndb_cluster = \"catalog\"\nreader_prefix = \"catalog-capstan\"\n{class}min = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"aurora_reader_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 70\n")).unwrap()
    }

    #[test]
    fn new_readers_only_of_the_configured_class_and_with_capstans_tags() {
        let readers = "arn:aws:rds:us-east-1:123456789012:db:catalog-capstan-*";
        let tags = json!({
            "aws:RequestTag/capstan:managed": "true",
            "aws:RequestTag/capstan:target": "db",
        });
        let keys = json!({"aws:TagKeys": ["capstan:managed", "capstan:target"]});
        let doc = policy(
            &aurora("reader_instance_class = \"db.r6g.large\"\n"),
            &scope(),
        );
        let create = statements_for(&doc, "rds:CreateDBInstance", readers);
        assert_eq!(create.len(), 1, "{create:?}");
        let mut want = tags.clone();
        want["rds:DatabaseClass"] = json!("db.r6g.large");
        assert_eq!(
            create[0]["Condition"],
            json!({"StringEquals": want, "ForAllValues:StringEquals": keys}),
            "{:#}",
            create[0]
        );
        // The instance is the only resource under that condition: the cluster and the
        // groups it is created in are not instances and carry no class or tags.
        assert_eq!(create[0]["Resource"], json!(readers));
        // Tagging on create is authorized separately, with the same tags.
        let tag = statements_for(&doc, "rds:AddTagsToResource", readers);
        assert_eq!(tag.len(), 1);
        assert_eq!(
            tag[0]["Condition"],
            json!({"StringEquals": tags, "ForAllValues:StringEquals": keys})
        );
        // No statement grants either action on the instances without these conditions.
        for s in doc["Statement"].as_array().unwrap() {
            let acts = s["Action"].as_array().unwrap();
            if acts.iter().any(|a| a.as_str().unwrap().starts_with("rds:"))
                && s["Resource"].to_string().contains(":db:")
            {
                assert!(
                    s.get("Condition").is_some() || acts == &[json!("rds:DescribeDBInstances")],
                    "{s:#}"
                );
            }
        }
        // Without a configured class a reader takes the writer's class, which the policy
        // cannot know: tags only.
        let doc = policy(&aurora(""), &scope());
        let create = statements_for(&doc, "rds:CreateDBInstance", readers);
        assert_eq!(
            create[0]["Condition"],
            json!({"StringEquals": tags, "ForAllValues:StringEquals": keys})
        );
        // The cluster is described by name.
        let d = statements_for(
            &doc,
            "rds:DescribeDBClusters",
            "arn:aws:rds:us-east-1:123456789012:cluster:catalog",
        );
        assert_eq!(d.len(), 1);
        assert!(!doc.to_string().contains("cluster:*"));
    }

    fn lease_config(global: &str) -> Config {
        config::from_str("t.toml", &format!("[global]\nmetrics = \"off\"\n{global}\n[global.lease]\nenabled = true\ntable = \"locks\"\nname = \"shop*eu\"\n[[target]]\nname = \"w\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"s\"\nmin = 0\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 50\n")).unwrap()
    }

    #[test]
    fn table_items_only_under_this_deployments_keys() {
        let table = "arn:aws:dynamodb:us-east-1:123456789012:table/locks";
        let doc = policy(&lease_config(""), &scope());
        let items = statements_for(&doc, "dynamodb:PutItem", table);
        assert_eq!(items.len(), 1);
        let mut acts: Vec<&str> = items[0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        acts.sort();
        assert_eq!(
            acts,
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem"
            ]
        );
        // The name's `*` is a literal, not a wildcard.
        assert_eq!(
            items[0]["Condition"],
            json!({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
                "lease#shop${*}eu",
                "history#shop${*}eu#*",
            ]}})
        );
        // Sharded: every shard's lease of this deployment, histories unsuffixed.
        let doc = policy(&lease_config("shard = { index = 1, count = 4 }"), &scope());
        let items = statements_for(&doc, "dynamodb:GetItem", table);
        assert_eq!(
            items[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
            json!(["lease#shop${*}eu-shard-*-of-4", "history#shop${*}eu#*"])
        );
        // In the CloudFormation template, `${` is escaped for Fn::Sub.
        let cfn = policy_for_cloudformation(&lease_config("")).to_string();
        assert!(cfn.contains(r#"{"Fn::Sub":"lease#shop${!*}eu"}"#), "{cfn}");
    }

    #[test]
    fn example_config_needs_nothing_beyond_its_targets() {
        let cfg = config::from_str("example.toml", config::EMBEDDED_EXAMPLE).unwrap();
        let got = actions_and_resources(&policy(&cfg, &scope()));
        // The example has takeover off and no lease: none of those actions appear.
        for absent in [
            "application-autoscaling:RegisterScalableTarget",
            "autoscaling:SuspendProcesses",
            "dynamodb:GetItem",
        ] {
            assert!(!got.contains_key(absent), "{absent}");
        }
        assert!(got.contains_key("cloudwatch:PutMetricData"));
        assert!(got.keys().all(|a| !a.contains('*')));
    }
}
