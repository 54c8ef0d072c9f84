//! The local AWS emulator (moto server) for the integration tests and the local demo:
//! installed into a venv by `localstack/moto.sh`, started on a free loopback port, stopped
//! when dropped — and, through a watchdog, when the process that started it exits. Also
//! the few resource creations the demo and the tests share (an emulator has no console).

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
        let watchdog = r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null; wait $m; exit 0' TERM; while kill -0 "$2" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null"#;
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

/// Creates an ECS cluster (if needed), a task definition and an EC2-launch-type service.
/// Created at 0 tasks, the emulator reports its deployment as completed.
pub async fn create_ecs_service(
    sdk: &aws_config::SdkConfig,
    cluster: &str,
    service: &str,
    desired: i32,
) -> Result<(), String> {
    use aws_sdk_ecs::types::{ContainerDefinition, LaunchType};
    let ecs = aws_sdk_ecs::Client::new(sdk);
    ecs.create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .map_err(|e| format!("CreateCluster {cluster}: {e:?}"))?;
    let family = format!("{service}-task");
    ecs.register_task_definition()
        .family(&family)
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("nginx")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("RegisterTaskDefinition {family}: {e:?}"))?;
    ecs.create_service()
        .cluster(cluster)
        .service_name(service)
        .task_definition(&family)
        .desired_count(desired)
        .launch_type(LaunchType::Ec2)
        .send()
        .await
        .map_err(|e| format!("CreateService {service}: {e:?}"))?;
    Ok(())
}

/// Creates an Auto Scaling group from a new launch configuration in one zone, optionally
/// attached to target groups.
pub async fn create_asg(
    sdk: &aws_config::SdkConfig,
    name: &str,
    (min, max, desired): (i32, i32, i32),
    target_groups: &[&str],
) -> Result<(), String> {
    let autoscaling = aws_sdk_autoscaling::Client::new(sdk);
    let lc = format!("{name}-lc");
    autoscaling
        .create_launch_configuration()
        .launch_configuration_name(&lc)
        .image_id("ami-12345678")
        .instance_type("t3.micro")
        .send()
        .await
        .map_err(|e| format!("CreateLaunchConfiguration {lc}: {e:?}"))?;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(&lc)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones(format!("{region}a"))
        .set_target_group_arns(Some(target_groups.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .map_err(|e| format!("CreateAutoScalingGroup {name}: {e:?}"))?;
    Ok(())
}

/// Instance class of the writers this module creates.
pub const WRITER_CLASS: &str = "db.r6g.large";

/// Creates an Aurora PostgreSQL cluster with its writer `<cluster>-writer`.
pub async fn create_aurora_cluster(
    sdk: &aws_config::SdkConfig,
    cluster: &str,
) -> Result<(), String> {
    let rds = aws_sdk_rds::Client::new(sdk);
    rds.create_db_cluster()
        .db_cluster_identifier(cluster)
        .engine("aurora-postgresql")
        .master_username("capstan")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .map_err(|e| format!("CreateDBCluster {cluster}: {e:?}"))?;
    create_db_instance(sdk, cluster, &format!("{cluster}-writer"), &[]).await
}

/// Creates an instance in the cluster (the first one becomes the writer), with tags.
pub async fn create_db_instance(
    sdk: &aws_config::SdkConfig,
    cluster: &str,
    id: &str,
    tags: &[(&str, &str)],
) -> Result<(), String> {
    let mut req = aws_sdk_rds::Client::new(sdk)
        .create_db_instance()
        .db_instance_identifier(id)
        .db_cluster_identifier(cluster)
        .engine("aurora-postgresql")
        .db_instance_class(WRITER_CLASS);
    for (k, v) in tags {
        req = req.tags(aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build());
    }
    req.send()
        .await
        .map_err(|e| format!("CreateDBInstance {id}: {e:?}"))?;
    Ok(())
}
