//! Request counts by endpoint and status for `GET /_sandbox/stats`.
//!
//! Counted in a middleware around every route, keyed by method and route
//! pattern (`GET /crm/rest/v1/orders`) so that ids in paths do not make
//! unbounded keys; requests matching no route count as `unmatched`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Sandbox;
use super::faults::lock;

#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl Stats {
    pub fn record(&self, endpoint: String, status: u16) {
        *lock(&self.counts)
            .entry(endpoint)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// `{"requests": {"GET /crm/rest/v1/orders": {"200": 3, "429": 1}, …}}`
    pub fn to_json(&self) -> serde_json::Value {
        let counts = lock(&self.counts);
        let requests: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(endpoint, by_status)| {
                let statuses: serde_json::Map<String, serde_json::Value> = by_status
                    .iter()
                    .map(|(s, n)| (s.to_string(), serde_json::Value::from(*n)))
                    .collect();
                (endpoint.clone(), serde_json::Value::Object(statuses))
            })
            .collect();
        serde_json::json!({ "requests": requests })
    }
}

/// The counting middleware. The status is the one in the response head (a
/// truncated body still counts as its 200).
pub async fn count(State(sb): State<Sandbox>, request: Request, next: Next) -> Response {
    let endpoint = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", request.method(), path.as_str()),
        None => "unmatched".to_owned(),
    };
    let response = next.run(request).await;
    sb.0.stats.record(endpoint, response.status().as_u16());
    response
}
