//! EC2 Auto Scaling groups: `DescribeAutoScalingGroups` (batched by names),
//! `SetDesiredCapacity`, and a draining scale-in when the group is behind an ALB.
//!
//! Scale-in without a target group is a plain `SetDesiredCapacity`: AWS picks the instances
//! and honors scale-in protection. With target groups, capstan picks the instances itself
//! (unprotected and InService, highest instance id first), deregisters them from every
//! target group, and terminates them (`TerminateInstanceInAutoScalingGroup`, decrementing
//! the desired capacity) only once the longest deregistration delay has passed, so no
//! in-flight request is cut. The drain lives in the actuator's memory as a [`Drain`] and is
//! finished by the first `observe` or `set_capacity` at or after its end; time comes from
//! the caller's `now`, nothing sleeps. A process that restarts mid-drain forgets it: the
//! drained instances keep running out of service, and `observe` points them out.

use aws_sdk_autoscaling::Client;
use chrono::{DateTime, Duration, Utc};

use super::alb::TargetHealth;
use super::CapacityState;
use crate::aws::{AwsError, ErrorClass};
use crate::aws_error;

/// Names per `DescribeAutoScalingGroups` call.
pub(crate) const DESCRIBE_BATCH: usize = 50;

/// The parts of an Auto Scaling group capstan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub name: String,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub instances: Vec<InstanceView>,
    /// Target groups attached to the group.
    pub target_groups: Vec<String>,
    /// Suspended scaling processes (`AlarmNotification`, `Launch`, ...).
    pub suspended: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InstanceView {
    pub id: String,
    /// `Pending`, `Pending:Wait`, `InService`, `Terminating`, `Standby`, ...
    pub lifecycle: String,
    pub protected: bool,
}

impl InstanceView {
    pub(crate) fn in_service(&self) -> bool {
        self.lifecycle == "InService"
    }
    pub(crate) fn pending(&self) -> bool {
        self.lifecycle.starts_with("Pending")
    }
    /// On its way out of the group: no longer part of its capacity.
    pub(crate) fn leaving(&self) -> bool {
        self.lifecycle.starts_with("Terminat") || self.lifecycle.starts_with("Detach")
    }
}

fn count(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

impl GroupView {
    pub(crate) fn from_sdk(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Self {
        GroupView {
            name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
            desired: count(g.desired_capacity()),
            min: count(g.min_size()),
            max: count(g.max_size()),
            instances: g
                .instances()
                .iter()
                .map(|i| InstanceView {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    lifecycle: i
                        .lifecycle_state()
                        .map(|l| l.as_str().to_string())
                        .unwrap_or_default(),
                    protected: i.protected_from_scale_in().unwrap_or(false),
                })
                .collect(),
            target_groups: g.target_group_arns().to_vec(),
            suspended: g
                .suspended_processes()
                .iter()
                .filter_map(|p| p.process_name().map(str::to_string))
                .collect(),
        }
    }

    /// Instances protected from scale-in that still belong to the group's capacity.
    pub(crate) fn protected_count(&self) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.protected && !i.leaving())
            .count() as u32
    }

    fn has(&self, id: &str) -> bool {
        self.instances.iter().any(|i| i.id == id && !i.leaving())
    }
}

/// The capacity of a group. `tg_targets` are the targets of the target's ALB target group,
/// when it has one: then only the group's InService instances healthy there are ready.
pub(crate) fn capacity(g: &GroupView, tg_targets: Option<&[TargetHealth]>) -> CapacityState {
    let in_service = g.instances.iter().filter(|i| i.in_service());
    let ready = match tg_targets {
        Some(targets) => in_service
            .filter(|i| targets.iter().any(|t| t.id == i.id && t.state == "healthy"))
            .count(),
        None => in_service.count(),
    } as u32;
    let mut state = CapacityState {
        desired: g.desired,
        ready,
        pending: g.instances.iter().filter(|i| i.pending()).count() as u32,
        resource_min: Some(g.min),
        resource_max: Some(g.max),
        ..CapacityState::default()
    };
    let protected = g.protected_count();
    if protected > 0 {
        state.notes.push(format!(
            "{protected} instance(s) protected from scale-in: capacity stays at {protected} or more"
        ));
    }
    let leaving = g.instances.iter().filter(|i| i.leaving()).count();
    if leaving > 0 {
        state
            .notes
            .push(format!("{leaving} instance(s) terminating or detaching"));
    }
    let blocking: Vec<&str> = g
        .suspended
        .iter()
        .map(String::as_str)
        .filter(|p| matches!(*p, "Launch" | "Terminate"))
        .collect();
    if !blocking.is_empty() {
        state.notes.push(format!(
            "process(es) {} suspended on the group: capacity changes may not take effect",
            blocking.join(", ")
        ));
    }
    state
}

/// What to ask the group for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub set: u32,
    pub notes: Vec<String>,
}

/// The desired capacity to set for a request: never below the number of instances
/// protected from scale-in, and within the group's own min and max (each adjustment noted).
pub(crate) fn plan_desired(g: &GroupView, requested: u32) -> Plan {
    let mut set = requested;
    let mut notes = Vec::new();
    let protected = g.protected_count();
    if set < protected {
        notes.push(format!(
            "asked for {requested}, but {protected} instance(s) are protected from scale-in: \
             set {protected}"
        ));
        set = protected;
    }
    if set > g.max {
        notes.push(format!(
            "asked for {set}, above the group's max size {}: set {}",
            g.max, g.max
        ));
        set = g.max;
    }
    if set < g.min {
        notes.push(format!(
            "asked for {set}, below the group's min size {}: set {}",
            g.min, g.min
        ));
        set = g.min;
    }
    Plan { set, notes }
}

/// Up to `n` instances to drain for a scale-in: InService and unprotected; first those
/// already out of the target groups (`out_of_service`, e.g. left by a drain a restart cut
/// short), then the highest instance id first (a deterministic choice).
pub(crate) fn choose_victims(g: &GroupView, n: usize, out_of_service: &[String]) -> Vec<String> {
    let mut candidates: Vec<(bool, &str)> = g
        .instances
        .iter()
        .filter(|i| i.in_service() && !i.protected)
        .map(|i| (!out_of_service.contains(&i.id), i.id.as_str()))
        .collect();
    candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)));
    candidates
        .into_iter()
        .take(n)
        .map(|(_, id)| id.to_string())
        .collect()
}

/// InService instances of the group absent from its target group, other than `draining`
/// ones: out of service with nobody to terminate them (a drain cut short by a restart).
pub(crate) fn unregistered(
    g: &GroupView,
    tg_targets: &[TargetHealth],
    draining: &[String],
) -> Vec<String> {
    g.instances
        .iter()
        .filter(|i| i.in_service() && !draining.contains(&i.id))
        .filter(|i| !tg_targets.iter().any(|t| t.id == i.id))
        .map(|i| i.id.clone())
        .collect()
}

/// The group as it is right after `ids` were terminated with a decrement.
pub(crate) fn terminated(g: &mut GroupView, ids: &[String]) {
    for i in g.instances.iter_mut().filter(|i| ids.contains(&i.id)) {
        i.lifecycle = "Terminating".into();
    }
    g.desired = g.desired.saturating_sub(ids.len() as u32);
}

/// Which of `victims` to deregister from which target group: those registered there.
pub(crate) fn deregistrations(
    victims: &[String],
    registered: &[(String, Vec<TargetHealth>)],
) -> Vec<(String, Vec<String>)> {
    registered
        .iter()
        .map(|(tg, targets)| {
            let ids = victims
                .iter()
                .filter(|v| targets.iter().any(|t| t.id == **v))
                .cloned()
                .collect();
            (tg.clone(), ids)
        })
        .filter(|(_, ids): &(String, Vec<String>)| !ids.is_empty())
        .collect()
}

/// Instances taken out of their target groups, to be terminated at `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Drain {
    pub instances: Vec<String>,
    /// The instances deregistered from each target group (put back on a scale-out).
    pub deregistered: Vec<(String, Vec<String>)>,
    pub until: DateTime<Utc>,
}

/// Longer than any deregistration delay ALB allows (one hour).
const MAX_DELAY_SECS: u64 = 86_400;

impl Drain {
    pub(crate) fn new(
        instances: Vec<String>,
        deregistered: Vec<(String, Vec<String>)>,
        now: DateTime<Utc>,
        delay_secs: u64,
    ) -> Self {
        Drain {
            instances,
            deregistered,
            until: now + Duration::seconds(delay_secs.min(MAX_DELAY_SECS) as i64),
        }
    }

    /// The drained instances still in the group (others were removed by someone else).
    pub(crate) fn live(&self, g: &GroupView) -> Vec<String> {
        self.instances
            .iter()
            .filter(|id| g.has(id))
            .cloned()
            .collect()
    }
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Shows a drain in the observed state: the desired capacity is what the group will run
/// once the drained instances are gone, and scale-in is held meanwhile. Not a change in
/// flight: a scale-out must not wait for the drain (it puts drained instances back first).
pub(crate) fn apply_drain(
    state: &mut CapacityState,
    drain: &Drain,
    g: &GroupView,
    now: DateTime<Utc>,
) {
    let live = drain.live(g).len() as u32;
    if live == 0 {
        return;
    }
    state.desired = g.desired.saturating_sub(live);
    state.scale_in_blocked = Some(if now < drain.until {
        format!(
            "draining {live} instance(s) until {}",
            fmt_time(drain.until)
        )
    } else {
        format!(
            "{live} drained instance(s) to terminate (drain ended {})",
            fmt_time(drain.until)
        )
    });
    state.notes.push(format!(
        "the group's desired capacity {} includes {live} draining instance(s)",
        g.desired
    ));
}

/// What a capacity request does while a drain is under way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DrainAction {
    /// The drain is over or gone: forget it and handle the request as usual.
    Done,
    /// Before `until`: nothing to do.
    Wait,
    /// At or after `until`: terminate these instances, decrementing the desired capacity.
    Terminate(Vec<String>),
    /// A scale-out during the drain: put these instances back into their target groups
    /// instead of launching new ones (all of them when `then_scale_out`, which then raises
    /// the desired capacity as usual).
    Reinstate {
        ids: Vec<String>,
        then_scale_out: bool,
    },
}

/// The draining state machine: the drain, the group as it is now, the capacity asked for
/// and the caller's clock in; what to do out.
pub(crate) fn drain_action(
    drain: &Drain,
    g: &GroupView,
    requested: u32,
    now: DateTime<Utc>,
) -> DrainAction {
    let live = drain.live(g);
    if live.is_empty() {
        return DrainAction::Done;
    }
    let after = g.desired.saturating_sub(live.len() as u32);
    if requested > after {
        let k = ((requested - after) as usize).min(live.len());
        return DrainAction::Reinstate {
            ids: live[..k].to_vec(),
            then_scale_out: requested > g.desired,
        };
    }
    if now >= drain.until {
        DrainAction::Terminate(live)
    } else {
        DrainAction::Wait
    }
}

/// Describes the named groups (any number; batched). Groups that do not exist are absent.
pub(crate) async fn describe(client: &Client, names: &[&str]) -> Result<Vec<GroupView>, AwsError> {
    // The batches go out together (bounded; paced by the DescribeAutoScalingGroups limit).
    let mut batches = Vec::new();
    for chunk in names.chunks(DESCRIBE_BATCH) {
        batches.push(describe_batch(client, chunk));
    }
    let answers = crate::util::join_bounded(crate::util::CALL_CONCURRENCY, batches).await;
    let mut groups = Vec::new();
    for a in answers {
        groups.extend(a?);
    }
    Ok(groups)
}

/// Describes up to [`DESCRIBE_BATCH`] groups (all pages).
async fn describe_batch(client: &Client, chunk: &[&str]) -> Result<Vec<GroupView>, AwsError> {
    let mut groups = Vec::new();
    let mut token: Option<String> = None;
    loop {
        crate::ratelimit::acquire("DescribeAutoScalingGroups").await;
        let out = client
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.iter().map(|s| s.to_string()).collect()))
            .max_records(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                aws_error!(
                    aws_sdk_autoscaling,
                    e,
                    "autoscaling",
                    "DescribeAutoScalingGroups",
                    chunk.join(",")
                )
            })?;
        groups.extend(out.auto_scaling_groups().iter().map(GroupView::from_sdk));
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(groups)
}

pub(crate) fn not_found(name: &str) -> AwsError {
    AwsError::new(
        ErrorClass::NotFound,
        "autoscaling",
        "DescribeAutoScalingGroups",
        name,
        "Auto Scaling group not found",
    )
}

/// Describes one group.
pub(crate) async fn describe_one(client: &Client, name: &str) -> Result<GroupView, AwsError> {
    describe(client, &[name])
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| not_found(name))
}

pub(crate) async fn set_desired(client: &Client, name: &str, desired: u32) -> Result<(), AwsError> {
    let n = i32::try_from(desired).map_err(|_| {
        AwsError::new(
            ErrorClass::Invalid,
            "autoscaling",
            "SetDesiredCapacity",
            name,
            format!("desired capacity {desired} is out of range"),
        )
    })?;
    crate::ratelimit::acquire("SetDesiredCapacity").await;
    client
        .set_desired_capacity()
        .auto_scaling_group_name(name)
        .desired_capacity(n)
        .honor_cooldown(false)
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_autoscaling,
                e,
                "autoscaling",
                "SetDesiredCapacity",
                name
            )
        })?;
    Ok(())
}

/// Terminates one instance of the group and lowers its desired capacity by one.
pub(crate) async fn terminate(client: &Client, instance: &str) -> Result<(), AwsError> {
    crate::ratelimit::acquire("TerminateInstanceInAutoScalingGroup").await;
    client
        .terminate_instance_in_auto_scaling_group()
        .instance_id(instance)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .map_err(|e| {
            aws_error!(
                aws_sdk_autoscaling,
                e,
                "autoscaling",
                "TerminateInstanceInAutoScalingGroup",
                instance
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn inst(id: &str, lifecycle: &str, protected: bool) -> InstanceView {
        InstanceView {
            id: id.into(),
            lifecycle: lifecycle.into(),
            protected,
        }
    }

    fn group(desired: u32, min: u32, max: u32, instances: Vec<InstanceView>) -> GroupView {
        GroupView {
            name: "web".into(),
            desired,
            min,
            max,
            instances,
            target_groups: vec!["arn:tg".into()],
            suspended: vec![],
        }
    }

    fn th(id: &str, state: &str) -> TargetHealth {
        TargetHealth {
            id: id.into(),
            state: state.into(),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn reads_a_group_from_the_sdk() {
        use aws_sdk_autoscaling::types::{
            AutoScalingGroup, Instance, LifecycleState, SuspendedProcess,
        };
        let g = AutoScalingGroup::builder()
            .auto_scaling_group_name("web")
            .min_size(1)
            .max_size(8)
            .desired_capacity(3)
            .target_group_arns("arn:tg")
            .instances(
                Instance::builder()
                    .instance_id("i-1")
                    .lifecycle_state(LifecycleState::InService)
                    .protected_from_scale_in(true)
                    .build(),
            )
            .instances(
                Instance::builder()
                    .instance_id("i-2")
                    .lifecycle_state(LifecycleState::PendingWait)
                    .build(),
            )
            .suspended_processes(
                SuspendedProcess::builder()
                    .process_name("AlarmNotification")
                    .build(),
            )
            .build();
        let v = GroupView::from_sdk(&g);
        assert_eq!(
            v,
            GroupView {
                name: "web".into(),
                desired: 3,
                min: 1,
                max: 8,
                instances: vec![
                    inst("i-1", "InService", true),
                    inst("i-2", "Pending:Wait", false)
                ],
                target_groups: vec!["arn:tg".into()],
                suspended: vec!["AlarmNotification".into()],
            }
        );
        assert!(v.instances[1].pending());
    }

    #[test]
    fn capacity_counts_lifecycle_states() {
        let g = group(
            5,
            1,
            10,
            vec![
                inst("i-1", "InService", true),
                inst("i-2", "InService", false),
                inst("i-3", "Pending", false),
                inst("i-4", "Pending:Wait", false),
                inst("i-5", "Terminating", true),
                inst("i-6", "Standby", false),
            ],
        );
        let c = capacity(&g, None);
        assert_eq!((c.desired, c.ready, c.pending), (5, 2, 2));
        assert_eq!((c.resource_min, c.resource_max), (Some(1), Some(10)));
        assert!(c
            .notes
            .iter()
            .any(|n| n.starts_with("1 instance(s) protected")));
        assert!(c
            .notes
            .iter()
            .any(|n| n.contains("1 instance(s) terminating")));
        assert_eq!(c.scale_in_blocked, None);

        // Behind a target group only InService instances of this group healthy there are
        // ready.
        let targets = [
            th("i-1", "initial"),
            th("i-2", "healthy"),
            th("i-3", "healthy"),
            th("i-99", "healthy"),
        ];
        assert_eq!(capacity(&g, Some(&targets)).ready, 1);
    }

    #[test]
    fn instances_out_of_the_target_group_are_found() {
        let g = group(
            4,
            0,
            10,
            vec![
                inst("i-1", "InService", false),
                inst("i-2", "InService", false),
                inst("i-3", "InService", false),
                inst("i-4", "Pending", false),
            ],
        );
        let targets = [th("i-1", "healthy"), th("i-4", "initial")];
        assert_eq!(unregistered(&g, &targets, &[]), vec!["i-2", "i-3"]);
        // Instances of the current drain are out on purpose.
        assert_eq!(unregistered(&g, &targets, &["i-3".into()]), vec!["i-2"]);
    }

    #[test]
    fn terminated_instances_leave_the_capacity() {
        let mut g = group(
            3,
            0,
            10,
            vec![
                inst("i-1", "InService", false),
                inst("i-2", "InService", false),
                inst("i-3", "InService", false),
            ],
        );
        terminated(&mut g, &["i-3".into(), "i-2".into()]);
        let c = capacity(&g, None);
        assert_eq!((c.desired, c.ready), (1, 1));
        assert!(c
            .notes
            .iter()
            .any(|n| n == "2 instance(s) terminating or detaching"));
    }

    #[test]
    fn suspended_launch_or_terminate_is_noted() {
        let mut g = group(1, 1, 2, vec![inst("i-1", "InService", false)]);
        g.suspended = vec!["AlarmNotification".into()];
        assert!(capacity(&g, None).notes.is_empty());
        g.suspended.push("Terminate".into());
        assert!(capacity(&g, None).notes[0].contains("Terminate suspended"));
    }

    #[test]
    fn never_below_protected_instances() {
        let g = group(
            4,
            0,
            10,
            vec![
                inst("i-1", "InService", true),
                inst("i-2", "InService", true),
                inst("i-3", "InService", false),
                inst("i-4", "Terminating", true),
            ],
        );
        let p = plan_desired(&g, 1);
        assert_eq!(p.set, 2);
        assert_eq!(
            p.notes,
            vec!["asked for 1, but 2 instance(s) are protected from scale-in: set 2"]
        );
        assert_eq!(
            plan_desired(&g, 3),
            Plan {
                set: 3,
                notes: vec![]
            }
        );
    }

    #[test]
    fn clamps_to_group_bounds_with_notes() {
        let g = group(3, 2, 6, vec![]);
        let p = plan_desired(&g, 9);
        assert_eq!(p.set, 6);
        assert_eq!(
            p.notes,
            vec!["asked for 9, above the group's max size 6: set 6"]
        );
        let p = plan_desired(&g, 1);
        assert_eq!(p.set, 2);
        assert_eq!(
            p.notes,
            vec!["asked for 1, below the group's min size 2: set 2"]
        );
        assert!(plan_desired(&g, 4).notes.is_empty());
        // More protected instances than the max allows: the max wins, both noted.
        let g = group(
            3,
            0,
            1,
            vec![
                inst("i-1", "InService", true),
                inst("i-2", "InService", true),
            ],
        );
        let p = plan_desired(&g, 0);
        assert_eq!(p.set, 1);
        assert_eq!(p.notes.len(), 2);
    }

    #[test]
    fn victims_are_unprotected_in_service_highest_id_first() {
        let g = group(
            5,
            0,
            10,
            vec![
                inst("i-0a", "InService", false),
                inst("i-0c", "InService", true),
                inst("i-0b", "InService", false),
                inst("i-0d", "Pending", false),
                inst("i-0e", "InService", false),
            ],
        );
        assert_eq!(choose_victims(&g, 2, &[]), vec!["i-0e", "i-0b"]);
        assert_eq!(choose_victims(&g, 9, &[]), vec!["i-0e", "i-0b", "i-0a"]);
        assert!(choose_victims(&g, 0, &[]).is_empty());
        // Instances already out of the target group go first; protection still wins.
        let out = ["i-0a".to_string(), "i-0c".to_string()];
        assert_eq!(choose_victims(&g, 2, &out), vec!["i-0a", "i-0e"]);
    }

    #[test]
    fn deregisters_victims_only_where_registered() {
        let victims = vec!["i-1".to_string(), "i-2".to_string()];
        let registered = vec![
            (
                "tg-a".to_string(),
                vec![th("i-1", "healthy"), th("i-2", "unhealthy")],
            ),
            (
                "tg-b".to_string(),
                vec![th("i-2", "healthy"), th("i-3", "healthy")],
            ),
            ("tg-c".to_string(), vec![th("i-3", "healthy")]),
        ];
        assert_eq!(
            deregistrations(&victims, &registered),
            vec![
                ("tg-a".to_string(), victims.clone()),
                ("tg-b".to_string(), vec!["i-2".to_string()]),
            ]
        );
        assert!(deregistrations(&[], &registered).is_empty());
    }

    #[test]
    fn draining_state_machine() {
        let g = group(
            4,
            0,
            10,
            vec![
                inst("i-1", "InService", false),
                inst("i-2", "InService", false),
                inst("i-3", "InService", false),
                inst("i-4", "InService", false),
            ],
        );
        let d = Drain::new(
            vec!["i-4".into(), "i-3".into()],
            vec![("arn:tg".into(), vec!["i-4".into(), "i-3".into()])],
            t0(),
            30,
        );
        assert_eq!(d.until, t0() + Duration::seconds(30));

        // Observed while draining: desired is the capacity after the drain, scale-in held;
        // not a change in flight, so a scale-out is still asked for.
        let mut c = capacity(&g, None);
        apply_drain(&mut c, &d, &g, t0() + Duration::seconds(10));
        assert_eq!(c.desired, 2);
        assert!(!c.change_in_flight);
        assert_eq!(
            c.scale_in_blocked.as_deref(),
            Some("draining 2 instance(s) until 2026-03-01T12:00:30Z")
        );
        let mut c = capacity(&g, None);
        apply_drain(&mut c, &d, &g, t0() + Duration::seconds(30));
        assert!(c
            .scale_in_blocked
            .unwrap()
            .starts_with("2 drained instance(s) to terminate"));

        // Before `until` nothing happens, even if asked for less.
        assert_eq!(drain_action(&d, &g, 2, t0()), DrainAction::Wait);
        assert_eq!(
            drain_action(&d, &g, 1, t0() + Duration::seconds(29)),
            DrainAction::Wait
        );
        // At `until` the drained instances are terminated.
        assert_eq!(
            drain_action(&d, &g, 2, t0() + Duration::seconds(30)),
            DrainAction::Terminate(vec!["i-4".into(), "i-3".into()])
        );
        // A scale-out during the drain puts drained instances back first.
        assert_eq!(
            drain_action(&d, &g, 3, t0()),
            DrainAction::Reinstate {
                ids: vec!["i-4".into()],
                then_scale_out: false
            }
        );
        assert_eq!(
            drain_action(&d, &g, 6, t0() + Duration::seconds(40)),
            DrainAction::Reinstate {
                ids: vec!["i-4".into(), "i-3".into()],
                then_scale_out: true
            }
        );
    }

    #[test]
    fn drain_of_instances_gone_elsewhere_is_done() {
        let mut g = group(
            3,
            0,
            10,
            vec![
                inst("i-1", "InService", false),
                inst("i-2", "InService", false),
                inst("i-3", "Terminating", false),
            ],
        );
        let d = Drain::new(vec!["i-3".into(), "i-9".into()], vec![], t0(), 300);
        assert_eq!(
            Drain::new(vec![], vec![], t0(), u64::MAX).until,
            t0() + Duration::days(1)
        );
        assert!(d.live(&g).is_empty());
        assert_eq!(drain_action(&d, &g, 2, t0()), DrainAction::Done);
        let mut c = capacity(&g, None);
        apply_drain(&mut c, &d, &g, t0());
        assert_eq!((c.desired, c.scale_in_blocked), (3, None));

        // One of two drained instances still there: only it is terminated.
        g.instances.push(inst("i-9", "InService", false));
        assert_eq!(
            drain_action(&d, &g, 2, t0() + Duration::seconds(300)),
            DrainAction::Terminate(vec!["i-9".into()])
        );
    }
}
