//! The checked-in deployment files cannot drift from the code: the CloudFormation template
//! is exactly what `capstan cloudformation` generates from the deployed config, and its
//! task role is exactly `capstan iam-policy`'s policy for that config.

use std::process::Command;

fn capstan(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("AWS_REGION")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn checked_in_template_is_the_generated_one() {
    let generated = capstan(&["cloudformation", "--config", "deploy/capstan.toml"]);
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/capstan.template.json"
    ))
    .unwrap();
    assert!(
        generated == checked_in,
        "deploy/capstan.template.json is stale: regenerate it with\n  \
         cargo run -q -- cloudformation --config deploy/capstan.toml > deploy/capstan.template.json"
    );
}

#[test]
fn template_task_role_matches_iam_policy_for_the_same_account() {
    let template: serde_json::Value = serde_json::from_str(&capstan(&[
        "cloudformation",
        "--config",
        "deploy/capstan.toml",
    ]))
    .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&capstan(&[
        "iam-policy",
        "--config",
        "deploy/capstan.toml",
        "--account",
        "123456789012",
    ]))
    .unwrap();
    // Substitute the placeholders as CloudFormation would in that account.
    let role = template["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        .to_string()
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::AccountId}", "123456789012");
    let mut role: serde_json::Value = serde_json::from_str(&role).unwrap();
    fn unsub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) if o.len() == 1 && o.contains_key("Fn::Sub") => {
                *v = o["Fn::Sub"].clone();
            }
            serde_json::Value::Object(o) => o.values_mut().for_each(unsub),
            serde_json::Value::Array(a) => a.iter_mut().for_each(unsub),
            _ => {}
        }
    }
    unsub(&mut role);
    assert_eq!(role, policy);
}
