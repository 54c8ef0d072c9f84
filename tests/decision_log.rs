//! What the daemon logs about its decisions at the default level (info).

use std::io::Write;
use std::sync::{Arc, Mutex};

use capstan::config;
use capstan::controller::lease::SoleLeader;
use capstan::controller::state::MemoryStore;
use capstan::controller::{Controller, Options};
use capstan::fake::FakeCloud;
use chrono::{DateTime, Utc};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const CONFIG: &str = r#"
[global]
poll_interval = "15s"

[[target]]
name = "api"
kind = "ecs_service"
cluster = "shop"
service = "api"
min = 2
max = 20
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 50
"#;

/// One steady tick (nothing to change) with `log_all`, logged at the daemon's default
/// level; returns what was logged.
async fn steady_tick_log(log_all: bool) -> String {
    let out = Captured::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cloud = FakeCloud::new();
    cloud.set_capacity_now("api", 4);
    cloud.set_metric("api", "cpu", Some(50.0));
    let cfg = config::from_str("test.toml", CONFIG).unwrap_or_else(|d| panic!("{}", d[0]));
    let mut c = Controller::new(
        cfg,
        cloud.clone(),
        cloud.clone(),
        MemoryStore::default(),
        SoleLeader,
        Options {
            log_all,
            ..Options::default()
        },
    );
    let t0: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
    let r = c.tick(t0).await;
    assert_eq!(r.applied(), 0, "steady state: {:?}", r.results);
    assert!(r.result("api").unwrap().decision.is_some());
    out.text()
}

#[tokio::test]
async fn log_all_logs_every_decision_at_the_default_level() {
    let quiet = steady_tick_log(false).await;
    assert!(
        !quiet.contains("target_name=api"),
        "without --log-all a hold is not logged: {quiet}"
    );
    let all = steady_tick_log(true).await;
    let line = all
        .lines()
        .find(|l| l.contains("capstan::decision") && l.contains("target_name=api"))
        .unwrap_or_else(|| panic!("--log-all logs the hold at info: {all:?}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("current=4") && line.contains("desired=4"),
        "{line}"
    );
    assert!(line.contains("reason="), "{line}");
}
