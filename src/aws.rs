//! The shared AWS SDK setup and the one classifier of AWS errors.
//!
//! Every client is built from [`sdk_config`]: the standard credential chain, the region from
//! config or the environment, `AWS_ENDPOINT_URL` (and per-service overrides such as
//! `AWS_ENDPOINT_URL_SQS`) honored by the SDK, one HTTPS client on rustls with ring, the
//! SDK's standard retry mode (exponential backoff with jitter for throttling and transient
//! errors, bounded attempts) and per-call timeouts.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
