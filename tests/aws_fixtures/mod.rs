//! Fixtures of the actuator integration tests, created through the AWS SDK against the
//! emulator of `tests/common`: ECS services, ALB target groups, Auto Scaling groups with a
//! launch configuration, Aurora clusters with a writer. Every name comes from
//! `common::unique`, so tests share one emulator without seeing each other's resources.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{
    ProtocolEnum, TargetDescription, TargetGroupAttribute, TargetTypeEnum,
};
use capstan::config::{Behavior, Resource, Target};

use crate::common;

/// A target with no metrics or policies: the actuators read only its resource, name and
/// target group.
pub fn target(name: &str, resource: Resource, alb_target_group: Option<&str>) -> Target {
    Target {
        name: name.to_string(),
        resource,
        alb_target_group: alb_target_group.map(str::to_string),
        min: 0,
        max: 100,
        takeover: false,
        metrics: vec![],
        policies: vec![],
        schedules: vec![],
        behavior: Behavior::default(),
        fallback: None,
    }
}

pub fn region(sdk: &SdkConfig) -> String {
    sdk.region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into())
}

/// The id of the emulator's default VPC (target groups need a VPC that exists).
///
/// This is the one EC2 call the fixtures need, so it is made as a plain EC2 query-protocol
/// request instead of building the large EC2 SDK crate; the emulator does not check
/// signatures, only the service named in the credential scope.
pub fn default_vpc_id(sdk: &SdkConfig) -> String {
    let url = common::endpoint();
    let host = url
        .strip_prefix("http://")
        .expect("the VPC lookup talks plain HTTP to the emulator")
        .trim_end_matches('/');
    let body =
        "Action=DescribeVpcs&Version=2016-11-15&Filter.1.Name=is-default&Filter.1.Value.1=true";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/{}/ec2/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        region(sdk),
        body.len()
    );
    let mut stream = TcpStream::connect(host).expect("connect to the emulator");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let start = response
        .find("<vpcId>")
        .unwrap_or_else(|| panic!("no default VPC in: {response}"))
        + "<vpcId>".len();
    let end = start + response[start..].find("</vpcId>").unwrap();
    response[start..end].to_string()
}

/// An ECS cluster (created if needed) with one EC2-launch-type service.
pub async fn ecs_service(sdk: &SdkConfig, cluster: &str, service: &str, desired: i32) {
    capstan::emulator::create_ecs_service(sdk, cluster, service, desired)
        .await
        .unwrap();
}

pub async fn ecs_desired(sdk: &SdkConfig, cluster: &str, service: &str) -> i32 {
    aws_sdk_ecs::Client::new(sdk)
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .unwrap()
        .services()[0]
        .desired_count()
}

/// An ALB target group in the default VPC, with the given deregistration delay.
pub async fn target_group(sdk: &SdkConfig, kind: TargetTypeEnum, delay_secs: u32) -> String {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    let name = common::unique("tg");
    let arn = elb
        .create_target_group()
        .name(&name)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .vpc_id(default_vpc_id(sdk))
        .target_type(kind)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    elb.modify_target_group_attributes()
        .target_group_arn(&arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(delay_secs.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    arn
}

pub async fn register_ips(sdk: &SdkConfig, target_group: &str, ips: &[&str]) {
    let mut req = aws_sdk_elasticloadbalancingv2::Client::new(sdk)
        .register_targets()
        .target_group_arn(target_group);
    for ip in ips {
        req = req.targets(TargetDescription::builder().id(*ip).build());
    }
    req.send().await.unwrap();
}

/// (target id, health state) of every target in the group.
pub async fn target_health(sdk: &SdkConfig, target_group: &str) -> Vec<(String, String)> {
    let out = aws_sdk_elasticloadbalancingv2::Client::new(sdk)
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = out
        .target_health_descriptions()
        .iter()
        .map(|d| {
            (
                d.target()
                    .and_then(|t| t.id())
                    .unwrap_or_default()
                    .to_string(),
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// An Auto Scaling group from a launch configuration in one zone, optionally attached to
/// target groups.
pub async fn asg(sdk: &SdkConfig, name: &str, sizes: (i32, i32, i32), target_groups: &[&str]) {
    capstan::emulator::create_asg(sdk, name, sizes, target_groups)
        .await
        .unwrap();
}

/// The group's desired capacity and its instances as (id, lifecycle state, protected),
/// sorted by id.
pub async fn asg_state(sdk: &SdkConfig, name: &str) -> (i32, Vec<(String, String, bool)>) {
    let out = aws_sdk_autoscaling::Client::new(sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let mut instances: Vec<(String, String, bool)> = g
        .instances()
        .iter()
        .map(|i| {
            (
                i.instance_id().unwrap().to_string(),
                i.lifecycle_state().unwrap().as_str().to_string(),
                i.protected_from_scale_in().unwrap_or(false),
            )
        })
        .collect();
    instances.sort();
    (g.desired_capacity().unwrap(), instances)
}

pub async fn protect(sdk: &SdkConfig, group: &str, instances: &[String]) {
    set_protection(sdk, group, instances, true).await;
}

pub async fn set_protection(sdk: &SdkConfig, group: &str, instances: &[String], on: bool) {
    aws_sdk_autoscaling::Client::new(sdk)
        .set_instance_protection()
        .auto_scaling_group_name(group)
        .set_instance_ids(Some(instances.to_vec()))
        .protected_from_scale_in(on)
        .send()
        .await
        .unwrap();
}

pub const WRITER_CLASS: &str = capstan::emulator::WRITER_CLASS;

/// An Aurora PostgreSQL cluster with its writer `<cluster>-writer`.
pub async fn aurora_cluster(sdk: &SdkConfig, cluster: &str) {
    capstan::emulator::create_aurora_cluster(sdk, cluster)
        .await
        .unwrap();
}

/// An instance in the cluster (the first one becomes the writer), with tags.
pub async fn db_instance(sdk: &SdkConfig, cluster: &str, id: &str, tags: &[(&str, &str)]) {
    capstan::emulator::create_db_instance(sdk, cluster, id, tags)
        .await
        .unwrap();
}

/// An instance of a cluster as read back: id, writer flag, class, engine, tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInstance {
    pub id: String,
    pub writer: bool,
    pub class: String,
    pub engine: String,
    pub tags: Vec<(String, String)>,
}

/// The cluster's instances, sorted by id.
pub async fn aurora_instances(sdk: &SdkConfig, cluster: &str) -> Vec<DbInstance> {
    let rds = aws_sdk_rds::Client::new(sdk);
    let c = rds
        .describe_db_clusters()
        .db_cluster_identifier(cluster)
        .send()
        .await
        .unwrap();
    let members = c.db_clusters()[0].db_cluster_members().to_vec();
    let out = rds
        .describe_db_instances()
        .filters(
            aws_sdk_rds::types::Filter::builder()
                .name("db-cluster-id")
                .values(cluster)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut v: Vec<DbInstance> = out
        .db_instances()
        .iter()
        .map(|i| {
            let id = i.db_instance_identifier().unwrap().to_string();
            let mut tags: Vec<(String, String)> = i
                .tag_list()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            tags.sort();
            DbInstance {
                writer: members.iter().any(|m| {
                    m.db_instance_identifier() == Some(&id) && m.is_cluster_writer() == Some(true)
                }),
                id,
                class: i.db_instance_class().unwrap_or_default().to_string(),
                engine: i.engine().unwrap_or_default().to_string(),
                tags,
            }
        })
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}
