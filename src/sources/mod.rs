//! Metric sources: CloudWatch (batched `GetMetricData`, metric math) and SQS queue depth,
//! behind one small trait. Each returns capstan's own [`Reading`]s, never SDK types; the
//! parsing of every response is a small pure function with its own tests. [`cadence`]
//! decides which metrics a tick reads at all (`poll_every`) and reuses the others' last
//! reading.

pub mod cadence;
pub mod cloudwatch;
pub mod history;
pub mod sqs;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Metric, Target};
use crate::policy::Sample;

/// One metric of one target to read this tick.
#[derive(Clone, Debug)]
pub struct MetricRequest<'a> {
    pub target: &'a Target,
    pub metric: &'a Metric,
}

impl<'a> MetricRequest<'a> {
    /// Every metric of the given targets.
    pub fn all(targets: &[&'a Target]) -> Vec<MetricRequest<'a>> {
        targets
            .iter()
            .flat_map(|t| {
                t.metrics.iter().map(move |m| MetricRequest {
                    target: t,
                    metric: m,
                })
            })
            .collect()
    }
}

/// The value read for one request, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    pub target: String,
    /// The config metric's own name, shared.
    pub metric: std::sync::Arc<str>,
    /// `None` when missing; `problem` says why.
    pub sample: Option<Sample>,
    /// Start of the datapoint's period (CloudWatch) or the read time (SQS).
    pub at: Option<DateTime<Utc>>,
    pub problem: Option<String>,
    /// Set when this reading was not read this tick but reused (the metric's `poll_every`
    /// has not elapsed): when it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_read_at: Option<DateTime<Utc>>,
}

impl Reading {
    pub fn ok(req: &MetricRequest<'_>, sample: Sample, at: DateTime<Utc>) -> Self {
        Reading {
            target: req.target.name.clone(),
            metric: std::sync::Arc::clone(&req.metric.name),
            sample: Some(sample),
            at: Some(at),
            problem: None,
            reused_read_at: None,
        }
    }
    pub fn missing(req: &MetricRequest<'_>, problem: impl Into<String>) -> Self {
        Reading {
            target: req.target.name.clone(),
            metric: std::sync::Arc::clone(&req.metric.name),
            sample: None,
            at: None,
            problem: Some(problem.into()),
            reused_read_at: None,
        }
    }
}

/// Reads metrics. A source answers only the requests it serves and leaves the rest out.
pub trait Source: Send + Sync {
    fn read(
        &self,
        requests: &[MetricRequest<'_>],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Vec<Reading>> + Send;
}

/// Reads a metric's past, for the forecaster: `(step start, value)`, sorted, in the units the
/// policy means (each input read at the metric's own period and statistic, the expression
/// evaluated, then averaged into steps of `period_secs`; see [`history`]).
pub trait HistoryReader: Send + Sync {
    fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period_secs: u64,
    ) -> impl Future<Output = Result<Vec<(DateTime<Utc>, f64)>, crate::aws::AwsError>> + Send;
}

impl HistoryReader for cloudwatch::CloudWatchSource {
    async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, crate::aws::AwsError> {
        cloudwatch::CloudWatchSource::history(self, target, metric, from, to, period_secs).await
    }
}

impl HistoryReader for AwsSources {
    async fn history(
        &self,
        target: &Target,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        period_secs: u64,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, crate::aws::AwsError> {
        self.cloudwatch
            .history(target, metric, from, to, period_secs)
            .await
    }
}

/// CloudWatch and SQS together: each request goes to the source that serves it.
#[derive(Clone, Debug)]
pub struct AwsSources {
    pub cloudwatch: cloudwatch::CloudWatchSource,
    pub sqs: sqs::SqsSource,
}

impl AwsSources {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        AwsSources {
            cloudwatch: cloudwatch::CloudWatchSource::new(sdk),
            sqs: sqs::SqsSource::new(sdk),
        }
    }
}

impl Source for AwsSources {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        let (mut a, b) = tokio::join!(
            self.cloudwatch.read(requests, now),
            self.sqs.read(requests, now)
        );
        a.extend(b);
        a
    }
}
