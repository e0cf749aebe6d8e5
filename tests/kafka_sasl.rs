//! A broker that wants SASL/SCRAM-SHA-512 over TLS, started by
//! `deploy/kafka/kafka.sh` (`KAFKA_SECURITY=sasl_ssl`) on its own port: the
//! poller publishes through it with credentials passed as `KAFKA_PROPERTY_*`
//! (the password from a file), `tail`, `state list` and `state show` read
//! through it; a wrong password stops the poller and the operator's
//! commands at once with one clear error, and so does a CA that did not
//! sign the broker's certificate.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::e2e::{self, Instances, Names, control, spawn_poller};
use keap_sandbox as sandbox;
use rdkafka::ClientConfig;
use reqwest::Method;
use serde_json::{Value, json};

/// Its own port (the controller takes the next one): never the broker of
/// `make kafka-up` or one of `kafka_script.rs`.
const PORT: &str = "19292";
const USER: &str = "poller-sasl-test";
const PASSWORD: &str = "sasl-test-password";
const WRONG_PASSWORD: &str = "not-the-sasl-test-password";
/// The one job of the test's instance.
const JOB: &str = "shop/orders";
/// A self-signed CA certificate that signed nothing of this test's broker
/// (made once with `openssl req -x509`; public, its key discarded).
const UNRELATED_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIDGzCCAgOgAwIBAgIUEZjnQ2PFM4lc1zpPejzeCBuvTe0wDQYJKoZIhvcNAQEL\nBQAwHDEaMBgGA1UEAwwRdW5yZWxhdGVkIHRlc3QgQ0EwIBcNMjYxMjAzMDY0MjM4\nWhgPMjEyNjExMDkwNjQyMzhaMBwxGjAYBgNVBAMMEXVucmVsYXRlZCB0ZXN0IENB\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0GU8KWDPbBisufpSl2Q/\nlxPyEIXtX9koVD+rHYhkBC7DzMYwZabiQWsbMCbZPNJFIhnVc7X7+PcTp7+0UOqO\nkGjIzQWTsHpisZTv0t9uYsTdRCVRDh8u0INjPe8gKJcvSa5kUbIr/K8QprNixjOS\ncSliYhpSctT11q02UZTZC1eLrxfH429jQJ+9/epJ+Dzz29NCts3XL0xceXTh8KZW\n5/Rsn2Wprafqw6IYk67kyFrv/z0ZYAFK6h08d9p8axdCChUPCm8P9EgEeb+YoI+b\nJF5yDsElydBdAooLLdLPhigMtdpEe+YSP3rzORg0Qsxl9I9tNftZqS/9NiKEsGAk\nAwIDAQABo1MwUTAdBgNVHQ4EFgQUj94nOIKqROnOBE+pwYJvIl3sCwEwHwYDVR0j\nBBgwFoAUj94nOIKqROnOBE+pwYJvIl3sCwEwDwYDVR0TAQH/BAUwAwEB/zANBgkq\nhkiG9w0BAQsFAAOCAQEANBVNYek2jImVpz118MfGGFoRzbdywPOhuyP1WeDXx/UM\nMCESKNsxkhbgcPqcEiOxE83XeI8w+AX+wIrjjjGdqGybTxLL5ekxCA2BcBVXg6eU\naPOzYTCy+/4oNl/nKX79HsLL+J19ohtdxsl8YPA7NK7pP7BGmfFy6qDYCUso2FGy\ntskuRx1Y0JfsIlBqNykdAa12OUoGKtPwWiUn2MqplDZC176VwzD4XHMd/WFyDUJl\nw6EeXBcP+e+d9Zo+WIEHElYzQSPCTz3LNUbTgPzsPM4Je9SNnDxVePPCNEB5k8r2\npfcXJ6EB7CGwb+3wQD2flzRKvQNfAkJiGpXq3KRAjg==\n-----END CERTIFICATE-----\n";

fn script(action: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("deploy/kafka/kafka.sh")
        .arg(action)
        .env("KAFKA_PORT", PORT)
        .env("KAFKA_SECURITY", "sasl_ssl")
        .env("KAFKA_SASL_USER", USER)
        .env("KAFKA_SASL_PASSWORD", PASSWORD)
        .env("KAFKA_HEAP", "512m")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run kafka.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kafka.sh down` on the test's port when dropped, so a failed assertion
/// leaves no broker behind.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let (ok, log) = script("down");
        if !ok {
            eprintln!("kafka.sh down on port {PORT}: {log}");
        }
    }
}

/// A fresh SASL_SSL broker (a leftover one could have other users or CA);
/// the path of its CA certificate, as the script prints it.
fn fresh_broker() -> PathBuf {
    let (ok, log) = script("down");
    assert!(ok, "down before up: {log}");
    let (ok, log) = script("up");
    assert!(ok, "up: {log}");
    let ca = log
        .lines()
        .find_map(|l| l.split_once("CA certificate for clients (ssl.ca.location): "))
        .map(|(_, path)| PathBuf::from(path.trim()))
        .unwrap_or_else(|| panic!("up printed no CA certificate path: {log}"));
    assert!(ca.is_file(), "{} is not a file: {log}", ca.display());
    ca
}

/// The credentials as the service takes them: pass-through properties, the
/// password through a `_FILE` variable.
struct Credentials {
    ca: PathBuf,
    password_file: tempfile::NamedTempFile,
}

impl Credentials {
    fn new(ca: PathBuf, password: &str) -> Self {
        let mut password_file = tempfile::NamedTempFile::new().expect("password file");
        writeln!(password_file, "{password}").expect("write password");
        Self { ca, password_file }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{PORT}")),
            ("KAFKA_PROPERTY_SECURITY_PROTOCOL", "SASL_SSL".into()),
            ("KAFKA_PROPERTY_SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("KAFKA_PROPERTY_SASL_USERNAME", USER.into()),
            (
                "KAFKA_PROPERTY_SASL_PASSWORD_FILE",
                self.password_file.path().display().to_string(),
            ),
            (
                "KAFKA_PROPERTY_SSL_CA_LOCATION",
                self.ca.display().to_string(),
            ),
        ]
    }
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What the test's own Kafka reader connects with.
fn client(ca: &Path) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", format!("127.0.0.1:{PORT}"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD)
        .set("ssl.ca.location", ca.display().to_string());
    c
}

/// The keys of every committed record of `topic`, read to each partition's
/// end; empty while the topic does not exist.
fn committed_keys(ca: &Path, topic: &str) -> Vec<String> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = client(ca)
        .set("group.id", common::unique("sasl-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).expect("partition");
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut ended = std::collections::HashSet::new();
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended.len() < partitions {
        assert!(Instant::now() < deadline, "no end of {topic}");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            Some(Ok(m)) => keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into()),
        }
    }
    keys
}

/// Waits until the job has committed its first checkpoint (its starting
/// point), so orders created afterwards are its events.
async fn await_checkpoint(ca: &Path, names: &Names, poller: &mut e2e::Poller) {
    let key = format!("job/{JOB}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ca, topic) = (ca.to_owned(), names.state.clone());
        let keys = tokio::task::spawn_blocking(move || committed_keys(&ca, &topic))
            .await
            .expect("reader");
        if keys.contains(&key) {
            return;
        }
        assert!(
            poller.is_running(),
            "the poller exited before its first checkpoint:\n{}",
            poller.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {JOB} within 60 s; poller log:\n{}",
            poller.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `event-poller ARGS` with only `env` (and `PATH`), killed and failed
/// after `timeout`.
fn cli(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_event-poller"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn event-poller");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("event-poller output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("event-poller {args:?} did not finish within {timeout:?}");
        }
    }
}

/// Starts the poller with `credentials` the broker refuses: it must exit
/// non-zero within 30 s, with exactly one log line `about` the refusal,
/// which says `names_it`. Returns the log.
async fn refused_at_start_up(
    names: &Names,
    files: &e2e::Instances,
    credentials: &Credentials,
    about: impl Fn(&str) -> bool,
    names_it: &str,
) -> String {
    let started = Instant::now();
    let mut refused = spawn_poller(names, files, &borrowed(&credentials.env()));
    let code = refused.await_exit(Duration::from_secs(60)).await;
    let took = started.elapsed();
    let log = refused.log_text();
    assert!(
        code.is_some_and(|c| c != 0),
        "exit code {code:?} after a refusal; log:\n{log}"
    );
    let about_it: Vec<&str> = log.lines().filter(|l| about(l)).collect();
    assert_eq!(
        about_it.len(),
        1,
        "exactly one error about the refusal; log:\n{log}"
    );
    assert!(
        about_it[0].contains(names_it),
        "the error names the problem: {}",
        about_it[0]
    );
    assert!(
        took < Duration::from_secs(30),
        "refused after {took:?}; log:\n{log}"
    );
    log
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `event-poller tail ARGS` on the events topic; the JSON values printed.
fn tail(args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let mut all = vec!["tail", "--from-beginning", "--json"];
    all.extend_from_slice(args);
    let out = cli(&all, env, Duration::from_secs(60));
    assert!(out.status.success(), "tail {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("tail line {l:?}: {e}")))
        .collect()
}

fn sorted_object_ids(events: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| e["objectId"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sasl_ssl_broker_carries_events_and_refuses_a_wrong_password_at_start_up() {
    let _down = Down;
    // 1. The broker: SASL_SSL with SCRAM-SHA-512 on the client port.
    let ca = fresh_broker();

    // 2. The poller publishes the sandbox's orders through it.
    let sb = sandbox::start(e2e::oauth_sandbox()).await.expect("sandbox");
    let base = sb.base_url();
    let names = Names::new();
    let files = Instances::new(&[(
        "shop.json",
        e2e::instance("shop", &format!("{base}/crm/rest"), 1, json!({})).to_string(),
    )]);
    let good = Credentials::new(ca.clone(), PASSWORD);
    let good_env = good.env();
    let mut poller = spawn_poller(&names, &files, &borrowed(&good_env));
    await_checkpoint(&ca, &names, &mut poller).await;
    let created = control(&base, Method::POST, "/_sandbox/orders", json!({"count": 3})).await;
    let mut ids: Vec<String> = created["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    ids.sort();

    let mut reader_env = borrowed(&good_env);
    reader_env.extend([
        ("EVENTS_TOPIC", names.events.as_str()),
        ("STATE_TOPIC", names.state.as_str()),
        ("DLQ_TOPIC", names.dlq.as_str()),
        ("WORKER_GROUP_ID", names.group.as_str()),
        ("STATE_ENCRYPTION_KEY", e2e::TEST_KEY),
    ]);
    // Returns once three events are committed: the wait is the condition.
    let first = tail(&["--max", "3"], &reader_env);
    assert_eq!(sorted_object_ids(&first), ids, "the created orders");
    let all = tail(&["--exit-at-end"], &reader_env);
    assert_eq!(
        sorted_object_ids(&all),
        ids,
        "each created order exactly once, nothing else"
    );
    for e in &all {
        assert_eq!(e["instanceId"], "shop", "{e}");
        assert_eq!(e["objectType"], "orders", "{e}");
    }
    assert_eq!(poller.terminate(), Some(0), "{}", poller.log_text());

    // 4. A wrong password: the poller stops at start-up, quickly, with one
    // error that names the problem and not the password.
    let wrong = Credentials::new(ca.clone(), WRONG_PASSWORD);
    let log = refused_at_start_up(
        &names,
        &files,
        &wrong,
        |l| l.to_ascii_lowercase().contains("authentication"),
        "SASL authentication failed",
    )
    .await;
    assert!(
        !log.contains(WRONG_PASSWORD),
        "the log repeats the password:\n{log}"
    );

    // 3. `state list` reads the job's checkpoint through the same
    // credentials.
    let out = cli(
        &["state", "list", "--json"],
        &reader_env,
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "state list: {}{stdout}",
        text(&out.stderr)
    );
    let jobs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("state list line {l:?}: {e}")))
        .collect();
    let job = jobs
        .iter()
        .find(|j| j["job"] == JOB)
        .unwrap_or_else(|| panic!("state list has no {JOB}:\n{stdout}"));
    for field in ["partition", "watermark"] {
        assert!(job.get(field).is_some(), "no {field} in {job}");
    }
    let out = cli(
        &["state", "show", JOB],
        &reader_env,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "state show: {}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("state show prints JSON");
    assert_eq!(shown["job"], JOB);

    // 5. The operator's commands refuse wrong credentials as quickly and
    // as clearly as the worker.
    let wrong_owned = wrong.env();
    let wrong_env = borrowed(&wrong_owned);
    let mut wrong_reader = wrong_env.clone();
    wrong_reader.extend_from_slice(&reader_env[good_env.len()..]);
    let started = Instant::now();
    let out = cli(&["state", "list"], &wrong_reader, Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "state list with a wrong password");
    assert!(stderr.contains("SASL authentication failed"), "{stderr}");
    assert!(!stderr.contains(WRONG_PASSWORD), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );

    // 6. A CA that does not sign the broker's certificate: one clear
    // error about TLS, at start-up, not a minute of silence.
    let unrelated = tempfile::NamedTempFile::new().expect("CA file");
    std::fs::write(unrelated.path(), UNRELATED_CA).expect("write CA");
    let untrusted = Credentials::new(unrelated.path().to_path_buf(), PASSWORD);
    refused_at_start_up(
        &names,
        &files,
        &untrusted,
        |l| l.contains("TLS"),
        "KAFKA_PROPERTY_SSL_CA_LOCATION",
    )
    .await;

    sb.stop().await.expect("sandbox stop");
}
