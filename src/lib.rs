//! event-poller: polls SaaS APIs for changed records and publishes one
//! normalized change event per change to Kafka, exactly once.
//!
//! # Layout
//!
//! Modules in the order data flows through them:
//!
//! - [`settings`]: process settings from the environment (Kafka, topics, paths).
//! - [`instance`]: Open Connectors instance JSON → typed, validated jobs.
//! - [`javadate`]: Java date patterns (`yyyy-MM-dd'T'HH:mm:ssXXX`) compiled once,
//!   used to render URL dates and to parse the provider's record dates.
//! - [`template`]: `${date:…}` and friends in a resource URL → the URL to call.
//! - [`worker`]: group membership, state-partition ownership (fence → restore →
//!   schedule) and each job's poll loop.
//! - [`element`]: provider definitions as data: base URL, auth, paging, records path,
//!   hub-URL translation.
//! - [`fetch`]: HTTP: OAuth2 tokens, paging, retries, rate limits, body limits; one
//!   window of records, whole or not at all.
//! - [`provider`]: instance → element + fetcher + token store (the worker's source).
//! - [`detect`]: pure: records + checkpoint → changes, dead letters, next checkpoint.
//! - [`event`]: pure: change → Kafka record (key, JSON value, CloudEvents headers).
//! - [`publish`]: one transaction per poll on the state partition's producer;
//!   restore of checkpoints.
//! - [`checkpoint`]: the checkpoint and the state topic's keys;
//!   [`partition`]: the job → state-partition function.
//! - [`service`]: assembles the above for `event-poller run`.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` on `OPS_LISTEN`;
//!   [`metrics`]: the counters behind `/metrics`.
//!
//! Around them: [`validate`] and [`tail`] (commands), [`crypto`] (tokens
//! sealed at rest), [`secret`] (redacted strings), [`telemetry`] (logging,
//! and the poll loop's typed events that log and count). The Keap-compatible simulator behind the `keap-sandbox`
//! binary is its own crate (`crates/keap-sandbox`), a dev-dependency only.

pub mod backoff;
pub mod crypto;
pub mod detect;
pub mod element;
pub mod event;
pub mod fetch;
pub mod instance;
pub mod javadate;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod provider;
pub mod publish;
pub mod secret;
pub mod service;
pub mod settings;
pub mod source;
pub mod state;
pub mod tail;
pub mod telemetry;
pub mod template;
pub mod validate;
pub mod worker;
