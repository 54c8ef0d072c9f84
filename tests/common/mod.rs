//! Shared set-up of the integration tests that talk to an AWS emulator over HTTP.
//!
//! With `AWS_ENDPOINT_URL` set (CI, or LocalStack), tests use that endpoint. Otherwise the
//! first test starts a moto server on a free loopback port (installing it into the venv of
//! `localstack/moto.sh` if needed); a watchdog stops it when the test process exits.
//! Tests isolate themselves by unique resource names (see [`unique`]).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use capstan::aws::{sdk_config, AwsSettings};

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The emulator's endpoint URL, starting moto if needed.
pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| {
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
            return url;
        }
        start_moto()
    })
}

// The watchdog is never waited for: it ends by itself once this process has exited.
#[allow(clippy::zombie_processes)]
fn start_moto() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(root.join("localstack/moto.sh"))
        .arg("install")
        .status()
        .expect("run localstack/moto.sh install");
    assert!(status.success(), "installing moto failed");
    let venv = std::env::var("CAPSTAN_MOTO_VENV")
        .unwrap_or_else(|_| root.join(".venv/moto").display().to_string());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The watchdog shell ends moto when this test process is gone.
    let script = r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; while kill -0 "$2" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null"#;
    Command::new("bash")
        .args([
            "-c",
            script,
            &format!("{venv}/bin/moto_server"),
            &port.to_string(),
            &std::process::id().to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return url;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto did not start on {url}");
}

/// SDK config pointed at the emulator with test credentials.
pub async fn sdk() -> aws_config::SdkConfig {
    let settings = AwsSettings {
        region: Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())),
        endpoint_url: Some(endpoint().to_string()),
        static_credentials: Some(("test".into(), "test".into())),
        ..AwsSettings::default()
    };
    sdk_config(&settings).await
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}
