//! The shared AWS SDK setup and the one classifier of AWS errors.
//!
//! Every client is built from [`sdk_config`]: the standard credential chain, the region from
//! config or the environment, `AWS_ENDPOINT_URL` (and per-service overrides such as
//! `AWS_ENDPOINT_URL_SQS`) honored by the SDK, one HTTPS client on rustls with ring, the
//! SDK's standard retry mode (exponential backoff with jitter for throttling and transient
//! errors, bounded attempts) and per-call timeouts. Clients built with [`aws_client!`]
//! carry [`CallTimer`], which records every call's latency and failure by service and
//! operation in [`CallStats::global`] (served on `/metrics`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::util::Histogram;

/// Where and how to reach AWS. All fields optional: the defaults are the SDK's chain.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Overrides `AWS_ENDPOINT_URL` (tests point this at the emulator).
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the chain (tests only).
    pub static_credentials: Option<(String, String)>,
    /// Attempts per call, the first included. Default 3.
    pub max_attempts: Option<u32>,
    /// Timeout of one attempt. Default 5 s.
    pub attempt_timeout: Option<Duration>,
    /// Timeout of a whole call, retries included. Default 15 s.
    pub operation_timeout: Option<Duration>,
}

/// Loads the SDK configuration every AWS client of capstan is built from.
pub async fn sdk_config(s: &AwsSettings) -> SdkConfig {
    let http = Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(s.max_attempts.unwrap_or(3)))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(s.attempt_timeout.unwrap_or(Duration::from_secs(5)))
                .operation_timeout(s.operation_timeout.unwrap_or(Duration::from_secs(15)))
                .connect_timeout(Duration::from_secs(3))
                .build(),
        );
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(u) = &s.endpoint_url {
        loader = loader.endpoint_url(u.clone());
    }
    if let Some((id, secret)) = &s.static_credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "capstan-static",
        ));
    }
    loader.load().await
}

/// Resolves credentials once through the configured provider (the standard chain unless
/// set otherwise), so that a chain that cannot work stops the start with its reason rather
/// than a daemon that runs and never acts. `Err` when no source of the chain has
/// credentials or one is configured in a way this build cannot use (a profile for a
/// credential source it lacks, a malformed profile); `Ok(Some(warning))` when the answer
/// did not come (a timeout, an unreachable endpoint): the ticks retry it.
pub async fn check_credentials(
    sdk: &SdkConfig,
    timeout: Duration,
) -> Result<Option<String>, String> {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::ProvideCredentials as _;
    use aws_smithy_types::error::display::DisplayErrorContext;

    let Some(provider) = sdk.credentials_provider() else {
        return Err("no AWS credentials provider is configured".into());
    };
    match tokio::time::timeout(timeout, provider.provide_credentials()).await {
        Err(_) => Ok(Some(format!(
            "AWS credentials not resolved within {timeout:?}; retrying with each call"
        ))),
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => {
            let detail = DisplayErrorContext(&e).to_string();
            match e {
                CredentialsError::CredentialsNotLoaded(_) => Err(format!(
                    "no AWS credentials: no source of the standard chain has any (environment \
                     AWS_ACCESS_KEY_ID, the shared config and credentials files with \
                     AWS_PROFILE, a web identity token, ECS container credentials, the EC2 \
                     instance profile): {detail}"
                )),
                CredentialsError::InvalidConfiguration(_) => Err(format!(
                    "the AWS credentials configuration cannot be used: {detail}"
                )),
                _ => Ok(Some(format!(
                    "AWS credentials not resolved yet, retrying with each call: {detail}"
                ))),
            }
        }
    }
}

/// What kind of failure an AWS call ended in, after the SDK's own retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throttled: back off (the SDK already retried with jitter).
    Throttled,
    /// 5xx, timeouts, connection failures: retry on a later tick.
    Transient,
    /// The resource does not exist.
    NotFound,
    /// The credentials may not call this action on this resource.
    AccessDenied,
    /// The request was refused as invalid (a capstan or config bug).
    Invalid,
}

/// How an SDK error presented itself, independent of the crate version it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Dispatch,
    Response,
    Service,
    Construction,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
];

/// The one classifier: error code and HTTP status -> what to do about it.
pub fn classify(failure: Failure, code: Option<&str>, status: Option<u16>) -> ErrorClass {
    match failure {
        Failure::Timeout | Failure::Dispatch | Failure::Response => return ErrorClass::Transient,
        Failure::Construction => return ErrorClass::Invalid,
        Failure::Service => {}
    }
    let code = code.unwrap_or("");
    if THROTTLING.contains(&code) || status == Some(429) {
        ErrorClass::Throttled
    } else if code.contains("AccessDenied")
        || code == "UnauthorizedOperation"
        || code == "AuthFailure"
        || status == Some(403)
    {
        ErrorClass::AccessDenied
    } else if code.contains("NotFound")
        || code.starts_with("NoSuch")
        || code == "QueueDoesNotExist"
        || code.ends_with(".NonExistentQueue")
        || status == Some(404)
    {
        ErrorClass::NotFound
    } else if status.is_some_and(|s| s >= 500)
        || code == "ServiceUnavailable"
        || code == "InternalFailure"
        || code == "InternalError"
    {
        ErrorClass::Transient
    } else {
        ErrorClass::Invalid
    }
}

/// A failed AWS call, with what a person needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AwsError {
    pub class: ErrorClass,
    /// IAM service prefix, e.g. `ecs`.
    pub service: &'static str,
    /// API action, e.g. `UpdateService`.
    pub operation: &'static str,
    /// The resource the call was about.
    pub resource: String,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn new(
        class: ErrorClass,
        service: &'static str,
        operation: &'static str,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        AwsError {
            class,
            service,
            operation,
            resource: resource.into(),
            code: None,
            message: message.into(),
        }
    }

    /// The IAM action the caller lacks, for access-denied errors.
    pub fn missing_iam_action(&self) -> Option<String> {
        (self.class == ErrorClass::AccessDenied)
            .then(|| format!("{}:{}", self.service, self.operation))
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.class, ErrorClass::Throttled | ErrorClass::Transient)
    }

    /// Whether a mutating call that failed this way may still have been carried out: a
    /// timeout, a reset connection, a 5xx or an answer that could not be read may come after
    /// AWS received (and applied) the request. A throttle or a refusal (access denied, not
    /// found, invalid) is a definite "not done".
    pub fn may_have_applied(&self) -> bool {
        self.class == ErrorClass::Transient
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} on {}: ",
            self.service, self.operation, self.resource
        )?;
        match self.class {
            ErrorClass::AccessDenied => write!(
                f,
                "access denied; allow {}:{} on it for capstan's role",
                self.service, self.operation
            )?,
            ErrorClass::NotFound => write!(f, "not found")?,
            ErrorClass::Throttled => write!(f, "throttled")?,
            ErrorClass::Transient => write!(f, "temporary failure")?,
            ErrorClass::Invalid => write!(f, "request refused")?,
        }
        if let Some(c) = &self.code {
            write!(f, " ({c})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// Converts an `SdkError` of any AWS SDK crate (named by `$krate`) into an [`AwsError`].
/// A macro because the CloudWatch crate is pinned to an older runtime whose `SdkError` is
/// a different type.
#[macro_export]
macro_rules! aws_error {
    ($krate:ident, $err:expr, $service:expr, $operation:expr, $resource:expr) => {{
        use $krate::error::{ProvideErrorMetadata as _, SdkError};
        let e = &$err;
        let (failure, status) = match e {
            SdkError::TimeoutError(_) => ($crate::aws::Failure::Timeout, None),
            SdkError::DispatchFailure(_) => ($crate::aws::Failure::Dispatch, None),
            SdkError::ResponseError(r) => (
                $crate::aws::Failure::Response,
                Some(r.raw().status().as_u16()),
            ),
            SdkError::ServiceError(s) => (
                $crate::aws::Failure::Service,
                Some(s.raw().status().as_u16()),
            ),
            _ => ($crate::aws::Failure::Construction, None),
        };
        let code = e.code().map(str::to_string);
        let message = e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| $krate::error::DisplayErrorContext(e).to_string());
        $crate::aws::AwsError {
            class: $crate::aws::classify(failure, code.as_deref(), status),
            service: $service,
            operation: $operation,
            resource: ($resource).to_string(),
            code,
            message,
        }
    }};
}

/// Latency buckets of AWS calls, in seconds (a call may take up to the 15 s overall timeout).
pub const CALL_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
];

/// Latency and failures of one AWS operation.
#[derive(Clone, Debug, PartialEq)]
pub struct CallStat {
    /// Whole calls, retries included.
    pub latency: Histogram,
    /// Failed calls by kind: `timeout`, `connection`, `response`, `service`, `other`.
    pub errors: BTreeMap<&'static str, u64>,
}

/// AWS call statistics by (service, operation). The set of keys is bounded by the
/// operations capstan calls.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<(String, String), CallStat>>,
}

impl CallStats {
    /// The process-wide statistics that [`CallTimer`] records into.
    pub fn global() -> &'static CallStats {
        static STATS: OnceLock<CallStats> = OnceLock::new();
        STATS.get_or_init(CallStats::default)
    }

    pub fn record(&self, service: &str, operation: &str, secs: f64, error: Option<&'static str>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let stat = calls
            .entry((service.to_string(), operation.to_string()))
            .or_insert_with(|| CallStat {
                latency: Histogram::new(CALL_SECONDS),
                errors: BTreeMap::new(),
            });
        stat.latency.observe(secs);
        if let Some(kind) = error {
            *stat.errors.entry(kind).or_default() += 1;
        }
    }

    /// A copy of the statistics, sorted by service and operation.
    pub fn snapshot(&self) -> Vec<((String, String), CallStat)> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The SDK's service name as the IAM prefix capstan uses elsewhere (`Auto Scaling` ->
/// `autoscaling`).
pub fn service_label(sdk_name: &str) -> String {
    match sdk_name {
        "Auto Scaling" => "autoscaling".into(),
        "Application Auto Scaling" => "application-autoscaling".into(),
        "Elastic Load Balancing v2" => "elasticloadbalancing".into(),
        other => other.to_ascii_lowercase().replace(' ', "-"),
    }
}

/// An SDK interceptor that times each call (all attempts) and records it in
/// [`CallStats::global`] with the SDK's own service and operation names.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTimer;

#[derive(Clone, Debug)]
struct CallStart(std::time::Instant);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallTimer {
    fn name(&self) -> &'static str {
        "capstan::CallTimer"
    }

    fn read_before_execution(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(CallStart(std::time::Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(start) = cfg.load::<CallStart>() else {
            return Ok(());
        };
        let secs = start.0.elapsed().as_secs_f64();
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (service_label(m.service()), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let error = match ctx.output_or_error() {
            Some(Ok(_)) => None,
            Some(Err(e)) if e.is_timeout_error() => Some("timeout"),
            Some(Err(e)) if e.is_connector_error() => Some("connection"),
            Some(Err(e)) if e.is_response_error() => Some("response"),
            Some(Err(e)) if e.is_operation_error() => Some("service"),
            _ => Some("other"),
        };
        CallStats::global().record(&service, &operation, secs, error);
        Ok(())
    }
}

/// Builds a client of an AWS SDK crate (named by `$krate`) from the shared [`SdkConfig`]
/// with [`CallTimer`] attached.
#[macro_export]
macro_rules! aws_client {
    ($krate:ident, $sdk:expr) => {
        $krate::Client::from_conf(
            $krate::config::Builder::from($sdk)
                .interceptor($crate::aws::CallTimer)
                .build(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_stats_count_latency_and_errors_by_operation() {
        let s = CallStats::default();
        s.record("ecs", "DescribeServices", 0.02, None);
        s.record("ecs", "DescribeServices", 3.0, Some("timeout"));
        s.record("sqs", "GetQueueAttributes", 0.001, Some("service"));
        let snap = s.snapshot();
        assert_eq!(snap.len(), 2);
        let ((svc, op), ecs) = &snap[0];
        assert_eq!((svc.as_str(), op.as_str()), ("ecs", "DescribeServices"));
        assert_eq!(ecs.latency.count, 2);
        assert_eq!(ecs.errors.get("timeout"), Some(&1));
        assert_eq!(snap[1].1.errors.get("service"), Some(&1));
        assert_eq!(service_label("Auto Scaling"), "autoscaling");
        assert_eq!(
            service_label("Elastic Load Balancing v2"),
            "elasticloadbalancing"
        );
        assert_eq!(service_label("CloudWatch"), "cloudwatch");
    }

    #[test]
    fn classifies_codes_and_statuses() {
        use ErrorClass::*;
        use Failure::*;
        let cases = [
            (Service, Some("ThrottlingException"), Some(400), Throttled),
            (Service, Some("Throttling"), Some(400), Throttled),
            (Service, Some("RequestThrottled"), Some(403), Throttled),
            (Service, None, Some(429), Throttled),
            (
                Service,
                Some("AccessDeniedException"),
                Some(400),
                AccessDenied,
            ),
            (Service, Some("AccessDenied"), Some(403), AccessDenied),
            (
                Service,
                Some("UnauthorizedOperation"),
                Some(403),
                AccessDenied,
            ),
            (
                Service,
                Some("ServiceNotFoundException"),
                Some(400),
                NotFound,
            ),
            (Service, Some("DBClusterNotFoundFault"), Some(404), NotFound),
            (
                Service,
                Some("AWS.SimpleQueueService.NonExistentQueue"),
                Some(400),
                NotFound,
            ),
            (Service, Some("InternalFailure"), Some(500), Transient),
            (Service, None, Some(503), Transient),
            (Timeout, None, None, Transient),
            (Dispatch, None, None, Transient),
            (Response, None, Some(200), Transient),
            (
                Service,
                Some("InvalidParameterException"),
                Some(400),
                Invalid,
            ),
            (Construction, None, None, Invalid),
        ];
        for (failure, code, status, want) in cases {
            assert_eq!(
                classify(failure, code, status),
                want,
                "{failure:?} {code:?} {status:?}"
            );
        }
    }

    #[test]
    fn access_denied_names_the_missing_action() {
        let e = AwsError::new(
            ErrorClass::AccessDenied,
            "ecs",
            "UpdateService",
            "service/shop/api",
            "",
        );
        assert_eq!(e.missing_iam_action().as_deref(), Some("ecs:UpdateService"));
        assert_eq!(e.to_string(), "ecs:UpdateService on service/shop/api: access denied; allow ecs:UpdateService on it for capstan's role");
        assert!(!e.is_retryable());
        assert!(!e.may_have_applied());
    }

    #[test]
    fn only_failures_after_sending_may_have_applied() {
        use ErrorClass::*;
        use Failure::*;
        // (failure, code, status, may the change have been made?)
        let cases = [
            (Timeout, None, None, true),
            (Dispatch, None, None, true),
            (Response, None, Some(200), true),
            (Service, Some("InternalFailure"), Some(500), true),
            (Service, None, Some(503), true),
            (Service, Some("ThrottlingException"), Some(400), false),
            (Service, Some("AccessDeniedException"), Some(400), false),
            (Service, Some("ServiceNotFoundException"), Some(400), false),
            (Service, Some("InvalidParameterException"), Some(400), false),
            (Construction, None, None, false),
        ];
        for (failure, code, status, want) in cases {
            let e = AwsError {
                class: classify(failure, code, status),
                ..AwsError::new(Invalid, "ecs", "UpdateService", "svc", "")
            };
            assert_eq!(
                e.may_have_applied(),
                want,
                "{failure:?} {code:?} {status:?}"
            );
        }
    }
}
