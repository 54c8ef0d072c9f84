//! capstan: an AWS-native autoscaling control plane.
//!
//! - [`config`]: TOML files -> a validated [`config::Config`], every error with file, line,
//!   column and a hint.
//! - [`policy`]: the pure decision core. Config + observation + history in, decision and
//!   explanation out; no I/O, no clock.
//! - [`simulate`]: replays a request-rate trace through a target's policies (or a baseline)
//!   with a model of the service; pure, driven by `capstan simulate`.
//! - [`cli`]: the `capstan` subcommands, called by the thin binary in `main.rs`.
//! - [`sources`], [`actuators`]: metric sources (CloudWatch, SQS) and capacity actuators
//!   (ECS, EC2 Auto Scaling, Aurora, ALB) behind two small traits.
//! - [`controller`]: the control loop (observe, decide, act, record), the history store
//!   and the leader lease; [`fake`]: an in-memory AWS stand-in for tests and benchmarks.
//! - [`forecast`]: the load forecaster of predictive policies (pure; daily and weekly
//!   seasonality, trend, robust to outages and spikes).
//! - [`daemon`]: `capstan run`, the long-running service (signals, reload, conflicts).
//! - [`demo`]: `capstan demo`, the whole loop against the local emulator.
//! - [`emulator`]: the local AWS emulator (moto) for the integration tests and the demo.
//! - [`telemetry`]: capstan's own metrics (CloudWatch or Embedded Metric Format).
//! - [`ops`]: operating capstan: dashboard, alarms, least-privilege IAM policy,
//!   CloudFormation template, container health check.
//! - [`http`]: the read-only HTTP endpoints of `capstan run` (health, readiness,
//!   Prometheus metrics, JSON state and decisions, the status page).
//! - [`aws`]: the shared AWS SDK configuration (credential chain, region, endpoint
//!   override, rustls/ring HTTP client, retries, timeouts) and the one classifier of AWS
//!   errors.

pub mod actuators;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod fake;
pub mod forecast;
pub mod http;
pub mod ops;
pub mod policy;
pub mod ratelimit;
pub mod simulate;
pub mod sources;
pub mod telemetry;
pub mod util;
