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
//! - [`validate`]: the `validate` command: instance files → problems and rendered URLs.
//! - [`element`]: provider definitions as data: base URL, auth, paging, records path,
//!   hub-URL translation.
//! - [`fetch`]: HTTP: OAuth2 tokens, paging, retries, rate limits, body limits; one
//!   window of records, whole or not at all.
//! - [`secret`]: a string that never reaches logs or `Debug` output.
//! - [`sandbox`]: the Keap-compatible simulator behind the `keap-sandbox` binary;
//!   never on the service's path.

pub mod element;
pub mod fetch;
pub mod instance;
pub mod javadate;
pub mod sandbox;
pub mod secret;
pub mod settings;
pub mod template;
pub mod validate;
