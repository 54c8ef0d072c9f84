//! SQS queue depth: `GetQueueAttributes` for visible, in-flight and delayed messages, by
//! queue name or URL, the queues of one tick fetched concurrently with a bound. The core
//! applies KEDA's queue-length rule to the three counters.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Semaphore};

use super::{MetricRequest, Reading, Source};
use crate::aws::AwsError;
use crate::config::MetricSource;
use crate::policy::Sample;

/// Queues read at once per tick by default.
pub const DEFAULT_CONCURRENCY: usize = 64;

const VISIBLE: &str = "ApproximateNumberOfMessages";
const IN_FLIGHT: &str = "ApproximateNumberOfMessagesNotVisible";
const DELAYED: &str = "ApproximateNumberOfMessagesDelayed";

/// The three counters from `GetQueueAttributes` output (attribute name -> text).
pub fn queue_sample(attrs: &HashMap<String, String>) -> Result<Sample, String> {
    let get = |k: &str| -> Result<f64, String> {
        let v = attrs
            .get(k)
            .ok_or_else(|| format!("{k} missing from the response"))?;
        v.parse::<u64>()
            .map(|n| n as f64)
            .map_err(|_| format!("{k} is not a count: `{v}`"))
    };
    Ok(Sample::Queue {
        visible: get(VISIBLE)?,
        in_flight: get(IN_FLIGHT)?,
        delayed: get(DELAYED)?,
    })
}

/// Whether the config names a queue by URL (used as is) or by name (looked up once).
pub fn is_url(queue: &str) -> bool {
    queue.starts_with("https://") || queue.starts_with("http://")
}

/// Reads SQS queue depths.
#[derive(Clone, Debug)]
pub struct SqsSource {
    client: aws_sdk_sqs::Client,
    concurrency: usize,
    urls: Arc<Mutex<HashMap<String, String>>>,
}

impl SqsSource {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        SqsSource {
            client: crate::aws_client!(aws_sdk_sqs, sdk),
            concurrency: DEFAULT_CONCURRENCY,
            urls: Arc::default(),
        }
    }

    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    async fn url(&self, queue: &str) -> Result<String, AwsError> {
        if is_url(queue) {
            return Ok(queue.to_string());
        }
        if let Some(u) = self.urls.lock().await.get(queue) {
            return Ok(u.clone());
        }
        crate::ratelimit::acquire("GetQueueUrl").await;
        let resp = self
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| crate::aws_error!(aws_sdk_sqs, e, "sqs", "GetQueueUrl", queue))?;
        let url = resp.queue_url().unwrap_or_default().to_string();
        self.urls
            .lock()
            .await
            .insert(queue.to_string(), url.clone());
        Ok(url)
    }

    /// The three counters of one queue.
    pub async fn depth(&self, queue: &str) -> Result<Result<Sample, String>, AwsError> {
        let url = self.url(queue).await?;
        crate::ratelimit::acquire("GetQueueAttributes").await;
        let resp = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| crate::aws_error!(aws_sdk_sqs, e, "sqs", "GetQueueAttributes", queue))?;
        let attrs: HashMap<String, String> = resp
            .attributes()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(queue_sample(&attrs))
    }
}

impl Source for SqsSource {
    async fn read(&self, requests: &[MetricRequest<'_>], now: DateTime<Utc>) -> Vec<Reading> {
        // One read per distinct queue, however many targets watch it.
        let mut queues: Vec<String> = requests
            .iter()
            .filter_map(|r| match &r.metric.source {
                MetricSource::Sqs { queue, .. } => Some(queue.clone()),
                _ => None,
            })
            .collect();
        queues.sort();
        queues.dedup();
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut set = tokio::task::JoinSet::new();
        for q in queues {
            let this = self.clone();
            let permits = permits.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let r = this.depth(&q).await;
                (q, r)
            });
        }
        let mut depths: HashMap<String, Result<Sample, String>> = HashMap::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((q, r)) = joined {
                depths.insert(q, r.map_err(|e| e.to_string()).and_then(|x| x));
            }
        }
        requests
            .iter()
            .filter_map(|r| match &r.metric.source {
                MetricSource::Sqs { queue, .. } => Some(match depths.get(queue) {
                    Some(Ok(s)) => Reading::ok(r, *s, now),
                    Some(Err(why)) => Reading::missing(r, why.clone()),
                    None => Reading::missing(r, "the read did not complete"),
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_counters() {
        let attrs: HashMap<String, String> =
            [(VISIBLE, "200"), (IN_FLIGHT, "100"), (DELAYED, "50")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(
            queue_sample(&attrs),
            Ok(Sample::Queue {
                visible: 200.0,
                in_flight: 100.0,
                delayed: 50.0
            })
        );
        let mut bad = attrs.clone();
        bad.insert(IN_FLIGHT.into(), "lots".into());
        assert!(queue_sample(&bad).unwrap_err().contains("not a count"));
        bad.remove(DELAYED);
        assert!(queue_sample(&bad).is_err());
    }

    #[test]
    fn urls_and_names() {
        assert!(is_url(
            "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
        ));
        assert!(!is_url("orders"));
    }
}
