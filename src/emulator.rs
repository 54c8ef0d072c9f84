//! The local AWS emulator (moto server) for the integration tests and the local demo:
//! installed into a venv by `localstack/moto.sh`, started on a free loopback port, stopped
//! when dropped — and, through a watchdog, when the process that started it exits.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct Emulator {
    pub endpoint: String,
    child: Child,
}

impl Emulator {
    /// Installs moto if needed (via `localstack/moto.sh install` under `root`), starts it
    /// on a free port of 127.0.0.1 and waits until it answers.
    pub fn start(root: &Path) -> Result<Emulator, String> {
        let script = root.join("localstack/moto.sh");
        let status = Command::new(&script)
            .arg("install")
            .status()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !status.success() {
            return Err("installing moto into the venv failed (see above)".into());
        }
        let venv = std::env::var("CAPSTAN_MOTO_VENV")
            .unwrap_or_else(|_| root.join(".venv/moto").display().to_string());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        // The shell waits for its parent (this process) and ends moto when it is gone, so
        // a killed test run or demo never leaves a server behind.
        let watchdog = r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null; exit 0' TERM; while kill -0 "$2" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null"#;
        let child = Command::new("bash")
            .args([
                "-c",
                watchdog,
                &format!("{venv}/bin/moto_server"),
                &port.to_string(),
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting moto_server: {e}"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Emulator { endpoint, child });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("moto did not answer on {endpoint} within 30 s"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // TERM lets the watchdog stop moto before it exits.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
