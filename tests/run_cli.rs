//! `event-poller run` refuses bad start-up input with a message naming the
//! variable or file, and never echoes a secret. None of these reach Kafka.

use std::path::Path;
use std::process::Command;

fn run(env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_event-poller"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run event-poller");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_setting_names_the_variable_and_hides_the_value() {
    let (code, err) = run(&[("MAX_CONCURRENT_POLLS", "hunter2")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("MAX_CONCURRENT_POLLS"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let (code, err) = run(&[("KAFKA_PROPERTY_SASL_PASSWORD_FILE", "/nonexistent/pw")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KAFKA_PROPERTY_SASL_PASSWORD_FILE"), "{err}");
}

#[test]
fn a_missing_instances_path_is_a_start_up_error() {
    let (code, err) = run(&[("INSTANCES_PATH", "/nonexistent/instances")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("INSTANCES_PATH") && err.contains("/nonexistent/instances"),
        "{err}"
    );
}

#[test]
fn oauth_instances_need_the_encryption_key() {
    let (code, err) = run(&[("INSTANCES_PATH", "tests/fixtures/instances/seed.json")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("STATE_ENCRYPTION_KEY") && err.contains("seed.json"),
        "{err}"
    );
    let (code, err) = run(&[
        ("INSTANCES_PATH", "tests/fixtures/instances/seed.json"),
        ("STATE_ENCRYPTION_KEY", "not-a-key-but-a-secret"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("STATE_ENCRYPTION_KEY"), "{err}");
    assert!(!err.contains("not-a-key-but-a-secret"), "{err}");
}

/// A property librdkafka refuses (a Java-only one people copy from Kafka
/// clients, or a misspelled name) is named with the reason, never with its
/// value. Before the fix the whole `name value` pair, password included,
/// was printed.
#[test]
fn a_refused_kafka_property_is_named_without_its_value() {
    let jaas = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="hunter2";"#;
    let (code, err) = run(&[("KAFKA_PROPERTY_SASL_JAAS_CONFIG", jaas)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KAFKA_PROPERTY_SASL_JAAS_CONFIG"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let (code, err) = run(&[("KAFKA_PROPERTY_SASL_PASSWORDD", "hunter2")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KAFKA_PROPERTY_SASL_PASSWORDD"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2").expect("write");
    let path = file.to_string_lossy().into_owned();
    let (code, err) = run(&[("KAFKA_PROPERTY_SASL_PASSWORDD_FILE", path.as_str())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KAFKA_PROPERTY_SASL_PASSWORDD_FILE"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
