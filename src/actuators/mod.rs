//! Capacity actuators: read what a resource runs and set what it should run. One file per
//! AWS service; each returns capstan's own types, never SDK types, and parses SDK output
//! in small pure functions tested on their own.
//!
//! An ALB target group attached to a target is its readiness signal (healthy targets are
//! ready capacity) and, for Auto Scaling groups, its draining step before scale-in.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::aws::AwsError;
use crate::config::Target;

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

    /// AWS's own scaling configured on the target's resource.
    fn conflicts(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<Conflict>, AwsError>> + Send;

    /// Suspends AWS's own scaling on the resource; returns what was done.
    fn take_over(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
}
