//! capstan: an AWS-native autoscaling control plane.
//!
//! - [`config`]: TOML files -> a validated [`config::Config`], every error with file, line,
//!   column and a hint.
//! - [`policy`]: the pure decision core. Config + observation + history in, decision and
//!   explanation out; no I/O, no clock.
//! - [`simulate`]: replays a request-rate trace through a target's policies (or a baseline)
//!   with a model of the service; pure, driven by `capstan simulate`.
//! - [`cli`]: the `capstan` subcommands (`validate`, `schema`, `decide`), called by the thin
//!   binary in `main.rs`.
//! - [`aws`]: the shared AWS SDK configuration (credentials chain, region, endpoint
//!   override, the rustls/ring HTTP client).

pub mod aws;
pub mod cli;
pub mod config;
pub mod policy;
pub mod simulate;
