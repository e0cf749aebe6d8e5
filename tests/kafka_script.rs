//! `deploy/kafka/kafka.sh` (behind `make kafka-up`/`kafka-down`/
//! `kafka-restart`): up twice and down twice succeed, and nothing is left
//! running; restart keeps what the broker stored; up refuses a taken
//! controller port. Each test uses its own port (and so its own controller
//! port, port+1) so none touches the broker the other tests use, or another's.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PORT: &str = "19392";
/// For the restart test; its controller listens on 19395.
const RESTART_PORT: &str = "19394";
/// For the taken-controller-port test, which occupies 19397.
const BUSY_PORT: &str = "19396";

const TIMEOUT: Duration = Duration::from_secs(30);

fn script(action: &str) -> (bool, String) {
    script_on(PORT, action)
}

fn script_on(port: &str, action: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("deploy/kafka/kafka.sh")
        .arg(action)
        .env("KAFKA_PORT", port)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run kafka.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn brokers_on_our_port() -> usize {
    brokers_on(PORT)
}

fn brokers_on(port: &str) -> usize {
    let out = Command::new("pgrep")
        .args(["-f", &format!("kafka.Kafka .*run-{port}/server.properties")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `kafka.sh down` on its port when dropped, so a failed assertion leaves no
/// broker behind (down is idempotent).
struct Down(&'static str);

impl Drop for Down {
    fn drop(&mut self) {
        let (ok, log) = script_on(self.0, "down");
        if !ok {
            eprintln!("kafka.sh down on port {}: {log}", self.0);
        }
    }
}

/// The cluster id the storage of the broker on `port` was formatted with.
fn cluster_id(port: &str) -> String {
    let cache = std::env::var_os("KAFKA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/kafka"));
    let meta = cache.join(format!("run-{port}/data/meta.properties"));
    let text = std::fs::read_to_string(&meta).unwrap_or_else(|e| panic!("{}: {e}", meta.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("cluster.id="))
        .unwrap_or_else(|| panic!("no cluster.id in {}", meta.display()))
        .to_owned()
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Creates `topic` (one partition) and writes `key=value` to it, returning
/// once the broker has acknowledged the record.
fn create_and_produce(bootstrap: &str, topic: &str, key: &str, value: &str) {
    block_on(async {
        let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().expect("admin");
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        for r in admin
            .create_topics(
                &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .expect("create_topics")
        {
            r.unwrap_or_else(|(t, code)| panic!("cannot create topic {t}: {code:?}"));
        }
        let producer: FutureProducer = client(bootstrap)
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer");
        producer
            .send(FutureRecord::to(topic).key(key).payload(value), TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .expect("record acknowledged");
    });
}

/// Every `(key, value)` of partition 0 of the script's broker.
fn read_all(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    common::read_partition_0(client(bootstrap), topic)
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

fn partition_offset(topic: &str, offset: Offset) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, offset)
        .expect("partition");
    tpl
}

#[test]
fn up_and_down_are_idempotent_and_leave_no_process() {
    let _down = Down(PORT);
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

#[test]
fn restart_keeps_records_committed_offsets_and_cluster_id() {
    let _down = Down(RESTART_PORT);
    let bootstrap = format!("127.0.0.1:{RESTART_PORT}");
    let (topic, group) = ("survives-restart", "survives-restart-group");
    let (ok, log) = script_on(RESTART_PORT, "up");
    assert!(ok, "up: {log}");
    create_and_produce(&bootstrap, topic, "key", "value");
    group_consumer(&bootstrap, group)
        .commit(
            &partition_offset(topic, Offset::Offset(1)),
            CommitMode::Sync,
        )
        .expect("commit offset 1");
    let formatted = cluster_id(RESTART_PORT);

    let (ok, log) = script_on(RESTART_PORT, "restart");
    assert!(ok, "restart: {log}");
    assert!(
        log.contains("stopped pid"),
        "restart must stop the broker: {log}"
    );
    assert!(log.contains("reusing storage"), "{log}");
    assert_eq!(brokers_on(RESTART_PORT), 1);
    let (ok, log) = script_on(RESTART_PORT, "status");
    assert!(ok, "status after restart: {log}");
    assert_eq!(
        cluster_id(RESTART_PORT),
        formatted,
        "restart must not format the storage again"
    );

    assert_eq!(
        read_all(&bootstrap, topic),
        vec![("key".to_owned(), "value".to_owned())],
        "the record written before the restart"
    );
    let committed = group_consumer(&bootstrap, group)
        .committed_offsets(partition_offset(topic, Offset::Invalid), TIMEOUT)
        .expect("committed offsets after restart");
    assert_eq!(
        committed
            .find_partition(topic, 0)
            .expect("partition 0")
            .offset(),
        Offset::Offset(1),
        "the offset committed before the restart"
    );

    let (ok, log) = script_on(RESTART_PORT, "down");
    assert!(ok, "down: {log}");
    assert_eq!(brokers_on(RESTART_PORT), 0);
}

#[test]
fn up_and_start_refuse_a_taken_controller_port() {
    let _down = Down(BUSY_PORT);
    let controller = BUSY_PORT.parse::<u16>().expect("port") + 1;
    let _taken = TcpListener::bind(("127.0.0.1", controller))
        .unwrap_or_else(|e| panic!("occupy 127.0.0.1:{controller}: {e}"));
    for action in ["up", "start"] {
        let (ok, log) = script_on(BUSY_PORT, action);
        assert!(!ok, "{action} must fail while {controller} is taken: {log}");
        assert!(
            log.contains(&format!("127.0.0.1:{controller}")),
            "{action} must name the taken port: {log}"
        );
        assert_eq!(brokers_on(BUSY_PORT), 0, "{action} left a broker: {log}");
    }
}
