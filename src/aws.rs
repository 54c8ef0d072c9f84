//! The shared AWS SDK configuration: the standard credential chain, the region from config
//! or the environment, `AWS_ENDPOINT_URL` (and per-service overrides) honored by the SDK,
//! and one HTTPS client built on rustls with the ring provider.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;

/// Loads the SDK configuration every AWS client of capstan is built from.
pub async fn sdk_config(region: Option<&str>) -> SdkConfig {
    let http = Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}
