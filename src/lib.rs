//! event-poller: polls SaaS APIs for changed records and publishes one
//! normalized change event per change to Kafka, exactly once.
//!
//! # Layout
//!
//! Modules in the order data flows through them (config → jobs → fetch →
//! detect → publish):
//!
//! - [`settings`]: process settings from the environment, one struct.
//! - [`instance`]: Open Connectors instance JSON → typed, validated instances.
//! - [`javadate`]: Java date patterns (`yyyy-MM-dd'T'HH:mm:ssXXX`) compiled once,
//!   used to render URL dates and to parse the provider's record dates.
//! - [`template`]: `${date:…}` and friends in a resource URL → the URL to call.
//! - [`worker`]: group membership, state-partition ownership (fence → restore →
//!   schedule), instances → jobs, and each job's poll loop.
//! - [`source`]: the provider seam the poll loop calls ("fetch this window"),
//!   with failures classed by what waiting can fix.
//! - [`provider`]: instance → element + fetcher + credentials: the HTTP source.
//! - [`element`]: provider definitions as data: base URL, auth, paging, records
//!   path, throttle headers, hub-URL translation.
//! - [`fetch`]: HTTP: one request driver with retries and rate-limit waits,
//!   paging, body limits, OAuth2 tokens; one window of records, whole or not
//!   at all.
//! - [`record`]: the id and date fields of a raw record, read without
//!   parsing the rest (the pager and detection both read them).
//! - [`detect`]: pure: records + checkpoint → changes, dead letters, next
//!   checkpoint.
//! - [`event`]: pure: change → Kafka record (key, JSON value, CloudEvents headers).
//! - [`publish`]: transactions on the state partition's producer (one poll's
//!   batch, or a group of them).
//! - [`state`]: what the state topic holds (checkpoints, keys, job → partition)
//!   and its restore.
//!
//! Around them: [`service`] (assembles the above for `event-poller run`),
//! [`ops`] (`/metrics`, `/healthz`, `/readyz`), [`telemetry`] (logging, the
//! typed events that log and count, the Prometheus registry), [`kafka`] (the
//! librdkafka configuration of every client), [`backoff`] (the one retry
//! policy), [`crypto`] (tokens sealed at rest), [`secret`] (redacted
//! strings), and the commands [`validate`], [`tail`] and the operator's
//! [`admin`] (`state`, `auth`, `poll-once`).
//!
//! Data flows one way, downwards, with one deliberate exception: **token
//! saves**. A rotated OAuth refresh token must be durable before the new
//! access token is used, so the fetch layer's token manager saves it
//! through [`source::CredentialStore`], which the worker's token vault
//! implements by committing a transaction on the state partition's
//! producer (`fetch` → `source` ← `worker`, called from below).
//!
//! The Keap-compatible simulator behind the `keap-sandbox` binary is its own
//! crate (`crates/keap-sandbox`), a dev-dependency only.

pub mod admin;
pub(crate) mod backoff;
pub(crate) mod crypto;
pub mod detect;
pub mod element;
pub mod event;
pub mod fetch;
pub mod instance;
pub mod javadate;
pub mod kafka;
pub(crate) mod ops;
pub(crate) mod provider;
pub mod publish;
pub mod record;
pub mod secret;
pub mod service;
pub mod settings;
pub mod source;
pub mod state;
pub mod tail;
pub mod telemetry;
pub(crate) mod template;
pub mod validate;
pub(crate) mod worker;
