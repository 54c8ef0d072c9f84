//! Capacity actuators: read what a resource runs and set what it should run. One file per
//! AWS service; each returns capstan's own types, never SDK types, and parses SDK output
//! in small pure functions tested on their own.
//!
//! An ALB target group attached to a target is its readiness signal (healthy targets are
//! ready capacity) and, for Auto Scaling groups, its draining step before scale-in.
//!
//! [`AwsActuators`] implements [`Actuator`] for every resource kind. `conflicts` only
//! reads; `set_capacity` and `take_over` change AWS resources, so a dry run calls neither.
//! `observe` reads, with one exception that never happens in a dry run: it finishes an Auto
//! Scaling group drain that `set_capacity` started (terminating the drained instances once
//! the target group's deregistration delay is over), because the caller asks for no change
//! while scale-in is held and the drain must end anyway. A drain is no change in flight: it
//! holds scale-in (`scale_in_blocked`) but a scale-out goes ahead, putting drained instances
//! back into service first. Aurora reports `change_in_flight` while any instance of the
//! cluster is not available; `set_capacity` then does nothing.
//!
//! IAM actions called. Reading: `ecs:DescribeServices`,
//! `autoscaling:DescribeAutoScalingGroups`, `autoscaling:DescribePolicies`,
//! `autoscaling:DescribeScheduledActions`, `rds:DescribeDBClusters`,
//! `rds:DescribeDBInstances`, `elasticloadbalancing:DescribeTargetHealth`,
//! `elasticloadbalancing:DescribeTargetGroupAttributes`,
//! `application-autoscaling:DescribeScalableTargets`, `...:DescribeScalingPolicies`,
//! `...:DescribeScheduledActions`. Changing: `ecs:UpdateService`,
//! `autoscaling:SetDesiredCapacity`, `autoscaling:TerminateInstanceInAutoScalingGroup`,
//! `elasticloadbalancing:DeregisterTargets`, `elasticloadbalancing:RegisterTargets`,
//! `rds:CreateDBInstance`, `rds:AddTagsToResource` (tags on create), `rds:DeleteDBInstance`;
//! take-over: `application-autoscaling:RegisterScalableTarget`,
//! `autoscaling:SuspendProcesses`.

mod alb;
mod asg;
pub(crate) mod aurora;
mod conflicts;
mod ecs;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::{AwsError, ErrorClass};

/// Services per `DescribeServices` call (the API's maximum).
pub const ECS_DESCRIBE_BATCH: usize = ecs::DESCRIBE_BATCH;
/// Groups per `DescribeAutoScalingGroups` call (the API's maximum).
pub const ASG_DESCRIBE_BATCH: usize = asg::DESCRIBE_BATCH;
use crate::config::{Resource, Target};

/// What a resource runs now, as capstan's decision core needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapacityState {
    /// The capacity the resource is asked to run (desired count, desired capacity, readers).
    pub desired: u32,
    /// Capacity that is up and serving.
    pub ready: u32,
    /// Capacity on its way (starting tasks, pending instances, readers being created).
    pub pending: u32,
    /// The resource's own bounds, where it has them (an ASG's min and max).
    pub resource_min: Option<u32>,
    pub resource_max: Option<u32>,
    /// Why scale-in must wait now (deployment in progress, draining, change in flight).
    pub scale_in_blocked: Option<String>,
    /// A change is still being carried out; no new change should start.
    pub change_in_flight: bool,
    /// Facts worth showing in the explanation.
    pub notes: Vec<String>,
}

/// The outcome of a capacity change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// What capstan asked for.
    pub requested: u32,
    /// What was set (differs when clamped by the resource's own limits).
    pub set: u32,
    pub notes: Vec<String>,
}

/// AWS-side scaling found on a resource capstan is to manage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub resource: String,
    /// e.g. "Application Auto Scaling policy cpu-tracking (TargetTrackingScaling)".
    pub what: String,
}

/// Reads and sets capacity. Implementations batch where the API allows.
pub trait Actuator: Send + Sync {
    /// The state of each target, in order; a failure on one never fails the others.
    fn observe(
        &self,
        targets: &[&Target],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Vec<Result<CapacityState, AwsError>>> + Send;

    /// Sets the target's capacity to `desired` (absolute, so a retry never doubles a step).
    fn set_capacity(
        &self,
        target: &Target,
        desired: u32,
        state: &CapacityState,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Applied, AwsError>> + Send;

    /// AWS's own scaling on the target's resource that can act now (suspended or disabled
    /// scaling is left out).
    fn conflicts(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<Conflict>, AwsError>> + Send;

    /// Suspends AWS's own scaling on the resource; returns what was done. What cannot be
    /// suspended stays a [`Conflict`]: check `conflicts` again afterwards.
    fn take_over(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;

    /// Whether this process may change resources now (leader, not dry run). The controller
    /// says so before each tick; work an actuator finishes on its own (an ASG drain whose
    /// delay is over) happens only while it may.
    fn set_acting(&self, _acting: bool) {}
}

/// The AWS actuators of every resource kind, built from one SDK configuration.
pub struct AwsActuators {
    ecs: aws_sdk_ecs::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    rds: aws_sdk_rds::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    aas: aws_sdk_applicationautoscaling::Client,
    /// Auto Scaling group drains under way, by target name.
    drains: Mutex<HashMap<String, asg::Drain>>,
    /// Whether this process may change resources (see [`Actuator::set_acting`]).
    acting: std::sync::atomic::AtomicBool,
}

type Indexed = Vec<(usize, Result<CapacityState, AwsError>)>;

/// A failure of a batched call, as the error of one target in the batch.
fn for_target(e: &AwsError, resource: impl Into<String>) -> AwsError {
    AwsError {
        resource: resource.into(),
        ..e.clone()
    }
}

impl AwsActuators {
    pub fn new(sdk: &SdkConfig) -> Self {
        AwsActuators {
            ecs: crate::aws_client!(aws_sdk_ecs, sdk),
            autoscaling: crate::aws_client!(aws_sdk_autoscaling, sdk),
            rds: crate::aws_client!(aws_sdk_rds, sdk),
            elb: crate::aws_client!(aws_sdk_elasticloadbalancingv2, sdk),
            aas: crate::aws_client!(aws_sdk_applicationautoscaling, sdk),
            drains: Mutex::new(HashMap::new()),
            acting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn drains(&self) -> MutexGuard<'_, HashMap<String, asg::Drain>> {
        self.drains.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The targets of each target group named, one call per group.
    async fn target_health(
        &self,
        mut target_groups: Vec<String>,
    ) -> HashMap<String, Result<Vec<alb::TargetHealth>, AwsError>> {
        target_groups.sort();
        target_groups.dedup();
        let mut calls = Vec::with_capacity(target_groups.len());
        for tg in &target_groups {
            calls.push(alb::target_health(&self.elb, tg));
        }
        let answers = crate::util::join_bounded(crate::util::CALL_CONCURRENCY, calls).await;
        target_groups.into_iter().zip(answers).collect()
    }

    /// Terminates the instances of a drain that are still in the group, decrementing its
    /// desired capacity; forgets the drain once all are gone. Returns those terminated.
    async fn finish_drain(
        &self,
        target: &str,
        drain: &asg::Drain,
        g: &asg::GroupView,
    ) -> Result<Vec<String>, AwsError> {
        let live = drain.live(g);
        for (k, id) in live.iter().enumerate() {
            if let Err(e) = asg::terminate(&self.autoscaling, id).await {
                if let Some(d) = self.drains().get_mut(target) {
                    d.instances.retain(|x| !live[..k].contains(x));
                }
                return Err(e);
            }
        }
        self.drains().remove(target);
        Ok(live)
    }

    async fn observe_ecs(&self, targets: &[&Target]) -> Indexed {
        let mut by_cluster: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
        for (i, t) in targets.iter().enumerate() {
            if let Resource::EcsService { cluster, service } = &t.resource {
                by_cluster
                    .entry(cluster.as_str())
                    .or_default()
                    .push((i, service.as_str()));
            }
        }
        let tgs: Vec<String> = targets
            .iter()
            .filter(|t| matches!(t.resource, Resource::EcsService { .. }))
            .filter_map(|t| t.alb_target_group.clone())
            .collect();
        let mut out = Vec::new();
        // Every batch of the tick at once (bounded; paced by the DescribeServices limit).
        let batches: Vec<(&str, &[(usize, &str)])> = by_cluster
            .iter()
            .flat_map(|(cluster, items)| {
                items
                    .chunks(ecs::DESCRIBE_BATCH)
                    .map(move |chunk| (*cluster, chunk))
            })
            .collect();
        let mut describes = Vec::with_capacity(batches.len());
        for (cluster, chunk) in &batches {
            describes.push(ecs::describe_batch(&self.ecs, cluster, chunk));
        }
        let (health, answers) = tokio::join!(
            self.target_health(tgs),
            crate::util::join_bounded(crate::util::CALL_CONCURRENCY, describes)
        );
        for ((cluster, chunk), answer) in batches.into_iter().zip(answers) {
            match answer {
                Err(e) => out.extend(
                    chunk
                        .iter()
                        .map(|(i, s)| (*i, Err(for_target(&e, ecs::resource_id(cluster, s))))),
                ),
                Ok(found) => {
                    for ((i, _), r) in chunk.iter().zip(found) {
                        let tg = targets[*i].alb_target_group.as_deref();
                        let state = r.and_then(|view| {
                            let healthy = match tg.and_then(|tg| health.get(tg)) {
                                Some(Ok(t)) => Some(alb::healthy_ids(t).len() as u32),
                                Some(Err(e)) => return Err(e.clone()),
                                None => None,
                            };
                            Ok(ecs::capacity(&view, healthy))
                        });
                        out.push((*i, state));
                    }
                }
            }
        }
        out
    }

    async fn observe_asg(&self, targets: &[&Target], now: DateTime<Utc>) -> Indexed {
        let items: Vec<(usize, &str)> = targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.resource {
                Resource::Asg { name } => Some((i, name.as_str())),
                _ => None,
            })
            .collect();
        if items.is_empty() {
            return vec![];
        }
        let mut names: Vec<&str> = items.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        let groups = match asg::describe(&self.autoscaling, &names).await {
            Ok(g) => g,
            Err(e) => {
                return items
                    .iter()
                    .map(|(i, n)| (*i, Err(for_target(&e, *n))))
                    .collect()
            }
        };
        let tgs: Vec<String> = items
            .iter()
            .filter_map(|(i, _)| targets[*i].alb_target_group.clone())
            .collect();
        let health = self.target_health(tgs).await;
        let mut out = Vec::new();
        for (i, name) in items {
            let target = targets[i];
            let Some(mut g) = groups.iter().find(|g| g.name == name).cloned() else {
                out.push((i, Err(asg::not_found(name))));
                continue;
            };
            let tg = target.alb_target_group.as_deref();
            let tg_targets = match tg.and_then(|tg| health.get(tg)) {
                Some(Ok(t)) => Some(t.as_slice()),
                Some(Err(e)) => {
                    out.push((i, Err(e.clone())));
                    continue;
                }
                None => None,
            };
            // A drain set_capacity started is finished here once its delay is over, so
            // the instances go even while nothing else changes.
            let mut notes = Vec::new();
            let acting = self.acting.load(std::sync::atomic::Ordering::SeqCst);
            let due = self
                .drains()
                .get(&target.name)
                .filter(|d| acting && now >= d.until)
                .cloned();
            if let Some(d) = due {
                match self.finish_drain(&target.name, &d, &g).await {
                    Ok(gone) => {
                        if !gone.is_empty() {
                            notes.push(format!(
                                "drain over: terminated {} instance(s) {}",
                                gone.len(),
                                gone.join(", ")
                            ));
                        }
                        asg::terminated(&mut g, &gone);
                    }
                    Err(e) => notes.push(format!(
                        "terminating drained instances failed, retried on the next call: {e}"
                    )),
                }
            }
            let mut state = asg::capacity(&g, tg_targets);
            state.notes.extend(notes);
            let mut drains = self.drains();
            let drain = drains.get(&target.name);
            if let (Some(targets_now), Some(tg)) = (tg_targets, tg) {
                if g.target_groups.iter().any(|a| a == tg) {
                    let draining = drain.map(|d| d.instances.as_slice()).unwrap_or_default();
                    let lost = asg::unregistered(&g, targets_now, draining);
                    if !lost.is_empty() {
                        state.notes.push(format!(
                            "{} InService instance(s) not registered in the target group \
                             (left by an interrupted drain?): {}",
                            lost.len(),
                            lost.join(", ")
                        ));
                    }
                }
            }
            if let Some(d) = drain {
                if d.live(&g).is_empty() {
                    drains.remove(&target.name);
                } else {
                    asg::apply_drain(&mut state, d, &g, now);
                }
            }
            out.push((i, Ok(state)));
        }
        out
    }

    async fn observe_aurora(&self, targets: &[&Target]) -> Indexed {
        let items: Vec<(usize, &str)> = targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.resource {
                Resource::AuroraReaders { db_cluster, .. } => Some((i, db_cluster.as_str())),
                _ => None,
            })
            .collect();
        if items.is_empty() {
            return vec![];
        }
        let mut ids: Vec<&str> = items.iter().map(|(_, c)| *c).collect();
        ids.sort_unstable();
        ids.dedup();
        let fetched = async {
            let clusters = aurora::describe_clusters(&self.rds, &ids).await?;
            let found: Vec<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
            let instances = if found.is_empty() {
                vec![]
            } else {
                aurora::describe_instances(&self.rds, &found).await?
            };
            Ok::<_, AwsError>((clusters, instances))
        }
        .await;
        let (clusters, instances) = match fetched {
            Ok(x) => x,
            Err(e) => {
                return items
                    .iter()
                    .map(|(i, c)| (*i, Err(for_target(&e, *c))))
                    .collect()
            }
        };
        items
            .iter()
            .map(|(i, id)| {
                let state = clusters
                    .iter()
                    .find(|c| c.id.eq_ignore_ascii_case(id))
                    .ok_or_else(|| aurora::not_found(id))
                    .map(|c| aurora::capacity(&aurora::nodes(c, &instances), &targets[*i].name));
                (*i, state)
            })
            .collect()
    }

    async fn set_ecs(
        &self,
        cluster: &str,
        service: &str,
        desired: u32,
    ) -> Result<Applied, AwsError> {
        let set = ecs::update_desired(&self.ecs, cluster, service, desired).await?;
        Ok(Applied {
            requested: desired,
            set,
            notes: vec![],
        })
    }

    async fn set_asg(
        &self,
        target: &Target,
        name: &str,
        desired: u32,
        now: DateTime<Utc>,
    ) -> Result<Applied, AwsError> {
        let g = asg::describe_one(&self.autoscaling, name).await?;
        let mut notes = Vec::new();
        let drain = self.drains().get(&target.name).cloned();
        if let Some(d) = drain {
            let live = d.live(&g);
            match asg::drain_action(&d, &g, desired, now) {
                asg::DrainAction::Done => {
                    self.drains().remove(&target.name);
                }
                asg::DrainAction::Wait => {
                    return Ok(Applied {
                        requested: desired,
                        set: g.desired.saturating_sub(live.len() as u32),
                        notes: vec![format!(
                            "draining {} instance(s) until {}: nothing else changes meanwhile",
                            live.len(),
                            asg::fmt_time(d.until)
                        )],
                    });
                }
                asg::DrainAction::Terminate(_) => {
                    let ids = self.finish_drain(&target.name, &d, &g).await?;
                    let set = g.desired.saturating_sub(ids.len() as u32);
                    notes.push(format!(
                        "drain over: terminated {} instance(s) {}",
                        ids.len(),
                        ids.join(", ")
                    ));
                    if desired < set {
                        notes.push(format!(
                            "scale-in further to {desired} starts on a later call"
                        ));
                    }
                    return Ok(Applied {
                        requested: desired,
                        set,
                        notes,
                    });
                }
                asg::DrainAction::Reinstate {
                    ids,
                    then_scale_out,
                } => {
                    for (tg, out) in &d.deregistered {
                        let back: Vec<String> =
                            out.iter().filter(|x| ids.contains(x)).cloned().collect();
                        alb::register(&self.elb, tg, &back).await?;
                    }
                    {
                        let mut drains = self.drains();
                        if let Some(d) = drains.get_mut(&target.name) {
                            d.instances.retain(|x| !ids.contains(x));
                            for (_, out) in &mut d.deregistered {
                                out.retain(|x| !ids.contains(x));
                            }
                            if d.instances.is_empty() {
                                drains.remove(&target.name);
                            }
                        }
                    }
                    notes.push(format!(
                        "put {} draining instance(s) back into service: {}",
                        ids.len(),
                        ids.join(", ")
                    ));
                    if !then_scale_out {
                        return Ok(Applied {
                            requested: desired,
                            set: desired,
                            notes,
                        });
                    }
                }
            }
        }

        let plan = asg::plan_desired(&g, desired);
        notes.extend(plan.notes);
        let applied = |set: u32, notes: Vec<String>| Applied {
            requested: desired,
            set,
            notes,
        };
        if plan.set == g.desired {
            return Ok(applied(plan.set, notes));
        }
        let mut target_groups = g.target_groups.clone();
        if let Some(tg) = &target.alb_target_group {
            if !target_groups.contains(tg) {
                target_groups.push(tg.clone());
            }
        }
        if plan.set > g.desired || target_groups.is_empty() {
            asg::set_desired(&self.autoscaling, name, plan.set).await?;
            return Ok(applied(plan.set, notes));
        }

        // Scale-in behind target groups: drain first.
        let wanted = (g.desired - plan.set) as usize;
        let mut registered = Vec::new();
        for tg in target_groups {
            let targets = alb::target_health(&self.elb, &tg).await?;
            registered.push((tg, targets));
        }
        let everywhere: Vec<alb::TargetHealth> = registered
            .iter()
            .flat_map(|(_, t)| t.iter().cloned())
            .collect();
        let out_of_service = asg::unregistered(&g, &everywhere, &[]);
        let victims = asg::choose_victims(&g, wanted, &out_of_service);
        if victims.len() < wanted {
            notes.push(format!(
                "only {} of {wanted} instance(s) can be drained now (the others are protected \
                 or not InService)",
                victims.len()
            ));
        }
        if victims.is_empty() {
            return Ok(applied(g.desired, notes));
        }
        let mut delay = 0;
        for (tg, _) in &registered {
            delay = delay.max(alb::deregistration_delay(&self.elb, tg).await?);
        }
        let outs = asg::deregistrations(&victims, &registered);
        for (k, (tg, ids)) in outs.iter().enumerate() {
            if let Err(e) = alb::deregister(&self.elb, tg, ids).await {
                // Undo the part done, so no instance is left out of service untracked.
                for (done, ids) in &outs[..k] {
                    let _ = alb::register(&self.elb, done, ids).await;
                }
                return Err(e);
            }
        }
        let set = g.desired - victims.len() as u32;
        if delay == 0 {
            for id in &victims {
                asg::terminate(&self.autoscaling, id).await?;
            }
            notes.push(format!(
                "terminated {} once out of the target group(s) (no deregistration delay)",
                victims.join(", ")
            ));
        } else {
            let d = asg::Drain::new(victims.clone(), outs, now, delay);
            notes.push(format!(
                "draining {} out of the target group(s) until {} (deregistration delay \
                 {delay} s), then terminating them",
                victims.join(", "),
                asg::fmt_time(d.until)
            ));
            self.drains().insert(target.name.clone(), d);
        }
        Ok(applied(set, notes))
    }

    async fn set_aurora(
        &self,
        target: &Target,
        db_cluster: &str,
        reader_prefix: &str,
        instance_class: Option<&str>,
        desired: u32,
    ) -> Result<Applied, AwsError> {
        let (cluster, nodes) = aurora::describe_one(&self.rds, db_cluster).await?;
        let state = aurora::capacity(&nodes, &target.name);
        let mut applied = Applied {
            requested: desired,
            set: state.desired,
            notes: vec![],
        };
        if state.change_in_flight {
            let why = state.scale_in_blocked.unwrap_or_default();
            applied.notes.push(format!("{why}: nothing done"));
            return Ok(applied);
        }
        if desired > state.desired {
            let class = aurora::reader_class(instance_class, &nodes).ok_or_else(|| {
                AwsError::new(
                    ErrorClass::Invalid,
                    "rds",
                    "CreateDBInstance",
                    db_cluster,
                    "no instance class configured and none to copy from the writer",
                )
            })?;
            let existing: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            let names =
                aurora::reader_names(reader_prefix, &existing, (desired - state.desired) as usize);
            for id in &names {
                aurora::create_reader(&self.rds, &cluster, id, &class, &target.name).await?;
                applied.set += 1;
            }
            applied.notes.push(format!(
                "creating reader(s) {} ({class}, {})",
                names.join(", "),
                cluster.engine
            ));
        } else if desired < state.desired {
            let wanted = (state.desired - desired) as usize;
            let ids = aurora::removable(&nodes, &target.name, reader_prefix, wanted);
            if ids.len() < wanted {
                applied.notes.push(format!(
                    "asked to remove {wanted} reader(s), but only {} of the cluster's readers \
                     were added by capstan for this target: removing {}",
                    ids.len(),
                    ids.len()
                ));
            }
            for id in &ids {
                aurora::delete_reader(&self.rds, id).await?;
                applied.set -= 1;
            }
            if !ids.is_empty() {
                applied
                    .notes
                    .push(format!("deleting reader(s) {}", ids.join(", ")));
            }
        }
        Ok(applied)
    }
}

impl Actuator for AwsActuators {
    fn set_acting(&self, acting: bool) {
        self.acting
            .store(acting, std::sync::atomic::Ordering::SeqCst);
    }

    async fn observe(
        &self,
        targets: &[&Target],
        now: DateTime<Utc>,
    ) -> Vec<Result<CapacityState, AwsError>> {
        let (e, a, r) = tokio::join!(
            self.observe_ecs(targets),
            self.observe_asg(targets, now),
            self.observe_aurora(targets)
        );
        let mut slots: Vec<Option<Result<CapacityState, AwsError>>> = vec![None; targets.len()];
        for (i, r) in e.into_iter().chain(a).chain(r) {
            slots[i] = Some(r);
        }
        slots
            .into_iter()
            .zip(targets)
            .map(|(s, t)| {
                s.unwrap_or_else(|| {
                    Err(AwsError::new(
                        ErrorClass::Invalid,
                        "capstan",
                        "Observe",
                        &t.name,
                        "no actuator observed this target",
                    ))
                })
            })
            .collect()
    }

    async fn set_capacity(
        &self,
        target: &Target,
        desired: u32,
        _state: &CapacityState,
        now: DateTime<Utc>,
    ) -> Result<Applied, AwsError> {
        match &target.resource {
            Resource::EcsService { cluster, service } => {
                self.set_ecs(cluster, service, desired).await
            }
            Resource::Asg { name } => self.set_asg(target, name, desired, now).await,
            Resource::AuroraReaders {
                db_cluster,
                reader_prefix,
                instance_class,
            } => {
                self.set_aurora(
                    target,
                    db_cluster,
                    reader_prefix,
                    instance_class.as_deref(),
                    desired,
                )
                .await
            }
        }
    }

    async fn conflicts(&self, target: &Target) -> Result<Vec<Conflict>, AwsError> {
        match &target.resource {
            Resource::Asg { name } => conflicts::find_asg(&self.autoscaling, name).await,
            other => match conflicts::AasKey::of(other) {
                Some(key) => conflicts::find_aas(&self.aas, &key).await,
                None => Ok(vec![]),
            },
        }
    }

    async fn take_over(&self, target: &Target) -> Result<Vec<String>, AwsError> {
        match &target.resource {
            Resource::Asg { name } => conflicts::take_over_asg(&self.autoscaling, name).await,
            other => match conflicts::AasKey::of(other) {
                Some(key) => conflicts::take_over_aas(&self.aas, &key).await,
                None => Ok(vec![]),
            },
        }
    }
}
