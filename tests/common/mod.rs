//! Shared set-up of the integration tests that talk to an AWS emulator over HTTP.
//!
//! With `AWS_ENDPOINT_URL` set (CI, or LocalStack), tests use that endpoint. Otherwise the
//! first test starts a moto server on a free loopback port (installing it into the venv of
//! `localstack/moto.sh` if needed); a watchdog stops it when the test process exits.
//! Tests isolate themselves by unique resource names (see [`unique`]).
#![allow(dead_code)]

pub mod daemon;
pub mod http;
pub mod proxy;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use capstan::aws::{sdk_config, AwsSettings};

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The emulator's endpoint URL, starting moto if needed.
pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| {
        if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
            return url;
        }
        let emu = capstan::emulator::Emulator::start(Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("start the emulator");
        let url = emu.endpoint.clone();
        // Statics are never dropped: the emulator's watchdog stops moto when this test
        // process exits.
        std::mem::forget(emu);
        url
    })
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

/// xorshift64*: a small seeded generator, so a failing run can be repeated.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
