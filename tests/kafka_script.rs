//! `deploy/kafka/kafka.sh` (behind `make kafka-up`/`kafka-down`): up twice
//! and down twice succeed, and nothing is left running. Uses its own port so
//! it never touches the broker the other tests use.

use std::path::Path;
use std::process::Command;

const PORT: &str = "19392";

fn script(action: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("deploy/kafka/kafka.sh")
        .arg(action)
        .env("KAFKA_PORT", PORT)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run kafka.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn brokers_on_our_port() -> usize {
    let out = Command::new("pgrep")
        .args(["-f", &format!("kafka.Kafka .*run-{PORT}/server.properties")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn up_and_down_are_idempotent_and_leave_no_process() {
    let (ok, log) = script("up");
    assert!(ok, "first up: {log}");
    assert_eq!(brokers_on_our_port(), 1);
    let (ok, log) = script("up");
    assert!(ok, "second up: {log}");
    assert!(log.contains("already running"), "{log}");
    assert_eq!(
        brokers_on_our_port(),
        1,
        "a second up must not start a second broker"
    );
    let (ok, log) = script("status");
    assert!(ok, "status: {log}");

    let (ok, log) = script("down");
    assert!(ok, "first down: {log}");
    let (ok, log) = script("down");
    assert!(ok, "second down: {log}");
    assert!(log.contains("not running"), "{log}");
    assert_eq!(brokers_on_our_port(), 0);
    let (ok, _) = script("status");
    assert!(!ok, "status after down must fail");
}
