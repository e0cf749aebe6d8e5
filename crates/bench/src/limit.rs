//! The baseline: how fast a plain producer, configured like the worker's,
//! gets records of a given size into a fresh topic on this broker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::kafka;

/// Records per transaction with `--transactional`.
pub const PER_TRANSACTION: usize = 1000;

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitRun {
    pub records: usize,
    pub value_bytes: usize,
    pub partitions: i32,
    pub transactional: bool,
    /// First send until every record was delivered (flushed/committed).
    pub seconds: f64,
    pub records_per_second: f64,
    pub mib_per_second: f64,
}

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// `records` records: keys `"<n>"` over about `records / 5` distinct ids,
/// values of exactly `value_bytes` bytes of JSON-like text.
pub fn build_records(records: usize, value_bytes: usize) -> Vec<(String, Vec<u8>)> {
    let ids = (records / 5).max(1);
    (0..records)
        .map(|i| {
            let key = (i % ids).to_string();
            let head = format!(r#"{{"objectId":"{key}","n":{i},"pad":""#);
            let mut value = head.into_bytes();
            let room = value_bytes.saturating_sub(value.len() + 2);
            value.extend(std::iter::repeat_n(b'x', room));
            value.extend_from_slice(b"\"}");
            (key, value)
        })
        .collect()
}

/// Sends `records` records of `value_bytes` to a fresh topic with
/// `partitions` partitions; with `transactional`, one transaction per
/// [`PER_TRANSACTION`] records. `properties` are librdkafka settings on top
/// of the worker-like ones (for experiments; the suite passes none).
pub async fn run(
    env: &Env,
    records: usize,
    value_bytes: usize,
    partitions: i32,
    transactional: bool,
    properties: &[(String, String)],
) -> Result<LimitRun> {
    let topic = env.unique(if transactional { "limit-txn" } else { "limit" });
    kafka::create_topic(&env.bootstrap, &topic, partitions).await?;
    kafka::await_topic(&env.bootstrap, &topic, Duration::from_secs(30)).await?;
    let data = build_records(records, value_bytes);
    let bootstrap = env.bootstrap.clone();
    let txn_id = transactional.then(|| env.unique("limit-producer"));
    let props = properties.to_vec();
    let seconds = tokio::task::spawn_blocking(move || {
        produce(&bootstrap, &topic, &data, txn_id.as_deref(), &props)
    })
    .await
    .context("producer thread")??;
    let total_bytes = (records * value_bytes) as f64;
    Ok(LimitRun {
        records,
        value_bytes,
        partitions,
        transactional,
        seconds,
        records_per_second: records as f64 / seconds,
        mib_per_second: total_bytes / seconds / (1024.0 * 1024.0),
    })
}

/// Sends everything; returns the seconds from the first send until the
/// last delivery.
fn produce(
    bootstrap: &str,
    topic: &str,
    data: &[(String, Vec<u8>)],
    transactional_id: Option<&str>,
    properties: &[(String, String)],
) -> Result<f64> {
    let mut config = kafka::client_config(bootstrap);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .context("create the producer")?;
    const TIMEOUT: Duration = Duration::from_secs(60);
    if transactional_id.is_some() {
        producer
            .init_transactions(TIMEOUT)
            .context("init transactions")?;
    }
    let started = Instant::now();
    for chunk in data.chunks(PER_TRANSACTION) {
        if transactional_id.is_some() {
            producer.begin_transaction().context("begin transaction")?;
        }
        for (key, value) in chunk {
            send(&producer, topic, key, value)?;
        }
        producer.poll(Duration::ZERO);
        if transactional_id.is_some() {
            // As the worker does (`publish::await_delivered`): rust-rdkafka's
            // commit would otherwise wait in 100 ms poll slices.
            let deadline = Instant::now() + TIMEOUT;
            while producer.in_flight_count() > 0 && Instant::now() < deadline {
                producer.poll(Duration::from_millis(1));
            }
            producer
                .commit_transaction(TIMEOUT)
                .context("commit transaction")?;
        }
    }
    producer.flush(TIMEOUT).context("flush")?;
    // Delivery reports of the last batch are served by poll.
    let deadline = Instant::now() + TIMEOUT;
    let want = data.len() as u64;
    loop {
        let ctx = producer.context();
        let (ok, failed) = (
            ctx.ok.load(Ordering::Relaxed),
            ctx.failed.load(Ordering::Relaxed),
        );
        if failed > 0 {
            let first = ctx
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            bail!("{failed} records were not delivered: {first:?}");
        }
        if ok >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ok} of {want} deliveries reported within {TIMEOUT:?}");
        }
        producer.poll(Duration::from_millis(10));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn send(producer: &BaseProducer<Deliveries>, topic: &str, key: &str, value: &[u8]) -> Result<()> {
    loop {
        match producer.send(BaseRecord::to(topic).key(key).payload(value)) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("send"),
        }
    }
}

/// `KEY=VALUE`, as `--producer-property` takes it.
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_key_value() {
        assert_eq!(
            parse_property("retry.backoff.ms=10").unwrap(),
            ("retry.backoff.ms".into(), "10".into())
        );
        assert!(parse_property("nokey").is_err());
        assert!(parse_property("=1").is_err());
    }

    #[test]
    fn records_have_the_asked_size_and_repeating_keys() {
        let r = build_records(100, 300);
        assert_eq!(r.len(), 100);
        assert!(r.iter().all(|(_, v)| v.len() == 300));
        let keys: std::collections::HashSet<&str> = r.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 20);
        let v: serde_json::Value = serde_json::from_slice(&r[7].1).unwrap();
        assert_eq!(v["objectId"], "7");
    }
}
