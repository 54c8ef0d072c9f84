//! Client-side rate limits: one token bucket per AWS API, so that a large fleet never trips
//! AWS throttling by itself. Every call site that can fan out with the number of targets
//! waits for a token of its API before sending ([`acquire`]); the buckets are process-wide,
//! so concurrent ticks, sources and actuators share them.
//!
//! The default rates ([`DEFAULTS`]) are kept under the quotas AWS documents (they are per
//! account and Region, shared with every other client of the account, so capstan takes only
//! part of them); `[global.rate_limits]` overrides them per API. A token is reserved in
//! arrival order, so waiting calls go out in the order they asked, at the bucket's rate.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: up to `burst` calls at once, then `rate` calls per second.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    /// Tokens left (negative: reserved ahead) and when they were counted.
    state: Mutex<(f64, Option<Instant>)>,
}

impl Bucket {
    /// A bucket refilling at `rate` tokens per second (at least 0.001), holding `burst`
    /// (at least 1).
    pub fn new(rate: f64, burst: u32) -> Self {
        Bucket {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            state: Mutex::new((f64::from(burst.max(1)), None)),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Reserves a token and returns how long to wait before using it.
    pub fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut s = self.state.lock().expect("bucket lock");
        let (tokens, at) = *s;
        let elapsed = at.map_or(0.0, |a| now.saturating_duration_since(a).as_secs_f64());
        let tokens = (tokens + elapsed * self.rate).min(self.burst) - 1.0;
        *s = (tokens, Some(now));
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.rate)
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Default limits: (API, calls per second, burst). APIs not listed are not limited (they
/// are called once per tick or once per change).
pub const DEFAULTS: &[(&str, f64, u32)] = &[
    // CloudWatch: GetMetricData 50 TPS per account and Region (the call carries up to 500
    // metrics, so 20 per second is 10,000 metrics per second).
    ("GetMetricData", 20.0, 20),
    // SQS: no documented TPS quota on GetQueueAttributes; bounded anyway.
    ("GetQueueAttributes", 1000.0, 1000),
    ("GetQueueUrl", 20.0, 20),
    // ECS: token buckets per account and Region (see the ECS request-throttling page).
    ("DescribeServices", 20.0, 40),
    ("UpdateService", 10.0, 50),
    // EC2 Auto Scaling: shared per-account quotas, not published per API.
    ("DescribeAutoScalingGroups", 10.0, 20),
    ("SetDesiredCapacity", 10.0, 50),
    ("TerminateInstanceInAutoScalingGroup", 5.0, 10),
    // Elastic Load Balancing.
    ("DescribeTargetHealth", 10.0, 20),
];

fn registry() -> &'static RwLock<HashMap<String, &'static Bucket>> {
    static R: OnceLock<RwLock<HashMap<String, &'static Bucket>>> = OnceLock::new();
    R.get_or_init(|| RwLock::new(HashMap::new()))
}

fn default_for(api: &str) -> Option<(f64, u32)> {
    DEFAULTS
        .iter()
        .find(|(name, ..)| *name == api)
        .map(|(_, r, b)| (*r, *b))
}

/// The process-wide bucket of an API, `None` when the API is not limited.
pub fn bucket(api: &str) -> Option<&'static Bucket> {
    if let Some(b) = registry().read().expect("rate limits").get(api) {
        return Some(*b);
    }
    let (rate, burst) = default_for(api)?;
    let mut w = registry().write().expect("rate limits");
    Some(
        *w.entry(api.to_string())
            .or_insert_with(|| Box::leak(Box::new(Bucket::new(rate, burst)))),
    )
}

/// Sets the limit of an API (from `[global.rate_limits]`); a burst of one second's calls.
/// Calls already waiting keep their reservation.
pub fn configure(api: &str, rate: f64) {
    let burst = rate.ceil().max(1.0) as u32;
    let b: &'static Bucket = Box::leak(Box::new(Bucket::new(rate, burst)));
    registry()
        .write()
        .expect("rate limits")
        .insert(api.to_string(), b);
}

/// Waits for a token of `api` (no wait for an API without a limit).
pub async fn acquire(api: &str) {
    if let Some(b) = bucket(api) {
        b.acquire().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls started over a window never exceed burst + rate * window.
    #[tokio::test(start_paused = true)]
    async fn calls_never_exceed_the_rate() {
        let b = std::sync::Arc::new(Bucket::new(10.0, 5));
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let b = b.clone();
            set.spawn(async move {
                b.acquire().await;
                Instant::now()
            });
        }
        let mut times = Vec::new();
        while let Some(t) = set.join_next().await {
            times.push(t.unwrap().duration_since(start).as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        // Every window [a, a + w] holds at most burst + rate * w + 1 calls (the bucket may
        // refill one token while the window's first call is sent).
        for (i, &a) in times.iter().enumerate() {
            for w in [0.0, 0.5, 1.0, 3.0, 10.0] {
                let n = times[i..]
                    .iter()
                    .take_while(|&&t| t <= a + w + 1e-9)
                    .count();
                assert!(
                    n as f64 <= 5.0 + 10.0 * w + 1.0,
                    "{n} calls in {w} s from {a}"
                );
            }
        }
        // And the bucket does not hold calls back needlessly: 200 calls at 10/s after a
        // burst of 5 take 19.5 s.
        let last = times[times.len() - 1];
        assert!((19.4..=19.6).contains(&last), "last call at {last}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_a_burst_through_then_refills() {
        let b = Bucket::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert_eq!(b.reserve(), Duration::from_millis(500));
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Refilled to the burst, not beyond.
        for _ in 0..3 {
            assert_eq!(b.reserve(), Duration::ZERO);
        }
        assert!(b.reserve() > Duration::ZERO);
    }

    #[test]
    fn defaults_and_overrides() {
        assert!(bucket("GetMetricData").is_some());
        assert!(bucket("PutMetricData").is_none());
        configure("SomeTestOnlyApi", 3.0);
        assert_eq!(bucket("SomeTestOnlyApi").map(Bucket::rate), Some(3.0));
    }
}
