//! Faults the real provider shows now and then, on demand.
//!
//! `PUT /_sandbox/faults` sets rates (probability per data request, 0..1) and
//! switches. Every data request (Keap orders, hub orders) draws one [`Plan`]
//! from a fault-only random source (seeded from `--seed`, separate from the
//! data generator so that faults never change the data), then:
//!
//! 1. waits `latency_ms`;
//! 2. (after authentication) answers 429 with `throttle_rate`, carrying
//!    Keap's quota headers and its gateway's JSON error, with `Retry-After`
//!    in seconds, as an HTTP-date, or absent;
//! 3. answers `error_status` (default 503) with `error_rate`;
//! 4. otherwise serves the page, where `bad_record_rate` corrupts one record
//!    (id removed, or a date that does not parse), `unsorted` shuffles the
//!    page, `malformed_rate` cuts the JSON short with a correct
//!    `Content-Length` (a complete HTTP response carrying broken JSON), and
//!    `truncate_rate` advertises the full `Content-Length` but sends half and
//!    drops the connection (the client sees an error mid-body).
//!
//! `shared_timestamps` is a switch on the store, not on responses: while on,
//! every write gets the same modification date, so a run of orders sharing
//! one date spans page boundaries, as after a bulk import. What is served
//! stays identical to the change log.
//!
//! Responses altered by a fault carry `x-sandbox-fault: <name>` so a test or
//! a human reading a trace can tell injected faults from bugs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use futures::StreamExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::clock::http_date;
use super::store::StoredOrder;

/// Seconds a throttled client is told to wait. Short, because tests wait it.
pub const RETRY_AFTER_SECONDS: i64 = 1;

/// Keap's documented per-client limits, reported in the quota headers
/// unless `--quota-per-day` / `--throttle-per-minute` say otherwise.
pub const DEFAULT_QUOTA_PER_DAY: u64 = 150_000;
pub const DEFAULT_THROTTLE_PER_MINUTE: u64 = 1_500;

/// How a 429 tells the client when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RetryAfter {
    /// `Retry-After: 1`
    #[default]
    #[serde(rename = "seconds")]
    Seconds,
    /// `Retry-After: Tue, 01 Oct 2024 10:00:01 GMT`
    #[serde(rename = "http-date")]
    HttpDate,
    /// No `Retry-After` at all: the client must pick its own back-off.
    #[serde(rename = "none")]
    None,
}

/// The active fault settings, as `GET/PUT/DELETE /_sandbox/faults` show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSettings {
    pub error_rate: f64,
    pub error_status: u16,
    pub throttle_rate: f64,
    pub retry_after: RetryAfter,
    pub latency_ms: u64,
    pub malformed_rate: f64,
    pub truncate_rate: f64,
    pub bad_record_rate: f64,
    pub shared_timestamps: bool,
    pub unsorted: bool,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_status: 503,
            throttle_rate: 0.0,
            retry_after: RetryAfter::Seconds,
            latency_ms: 0,
            malformed_rate: 0.0,
            truncate_rate: 0.0,
            bad_record_rate: 0.0,
            shared_timestamps: false,
            unsorted: false,
        }
    }
}

/// A `PUT /_sandbox/faults` body: any subset of the settings; absent keys
/// keep their value, unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPatch {
    pub error_rate: Option<f64>,
    pub error_status: Option<u16>,
    pub throttle_rate: Option<f64>,
    pub retry_after: Option<RetryAfter>,
    pub latency_ms: Option<u64>,
    pub malformed_rate: Option<f64>,
    pub truncate_rate: Option<f64>,
    pub bad_record_rate: Option<f64>,
    pub shared_timestamps: Option<bool>,
    pub unsorted: Option<bool>,
}

impl FaultPatch {
    /// Applies the patch to a copy of `current`.
    ///
    /// # Errors
    /// The name of the offending key and why, when a rate is outside 0..1,
    /// the status is not an error status, or the latency exceeds a minute.
    pub fn apply(&self, current: &FaultSettings) -> Result<FaultSettings, (String, String)> {
        let mut next = current.clone();
        let rates = [
            ("error_rate", self.error_rate, &mut next.error_rate),
            ("throttle_rate", self.throttle_rate, &mut next.throttle_rate),
            (
                "malformed_rate",
                self.malformed_rate,
                &mut next.malformed_rate,
            ),
            ("truncate_rate", self.truncate_rate, &mut next.truncate_rate),
            (
                "bad_record_rate",
                self.bad_record_rate,
                &mut next.bad_record_rate,
            ),
        ];
        for (name, value, slot) in rates {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    return Err((name.into(), format!("{v} is not a rate between 0 and 1")));
                }
                *slot = v;
            }
        }
        if let Some(s) = self.error_status {
            if !(400..=599).contains(&s) {
                return Err((
                    "error_status".into(),
                    format!("{s} is not a 4xx/5xx status"),
                ));
            }
            next.error_status = s;
        }
        if let Some(ms) = self.latency_ms {
            if ms > 60_000 {
                return Err(("latency_ms".into(), format!("{ms} exceeds 60000")));
            }
            next.latency_ms = ms;
        }
        if let Some(r) = self.retry_after {
            next.retry_after = r;
        }
        if let Some(b) = self.shared_timestamps {
            next.shared_timestamps = b;
        }
        if let Some(b) = self.unsorted {
            next.unsorted = b;
        }
        Ok(next)
    }
}

/// How a bad record is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    MissingId,
    /// The given date field holds this unparseable text.
    BadDate(&'static str, &'static str),
}

/// Unparseable dates real systems emit: MySQL zero dates, empty strings,
/// free text.
const BAD_DATES: &[&str] = &["0000-00-00T00:00:00.000+0000", "", "not a date"];

/// What this one request will suffer.
#[derive(Debug, Clone)]
pub struct Plan {
    pub latency: Duration,
    pub retry_after: RetryAfter,
    pub error_status: StatusCode,
    pub throttle: bool,
    pub error: bool,
    pub malformed: bool,
    pub truncate: bool,
    /// `(pick, kind)`: record `pick % page_len` is corrupted.
    pub bad_record: Option<(u64, BadKind)>,
    /// `Some(seed)` when the page must be served out of order.
    pub shuffle: Option<u64>,
}

/// Settings plus the fault random source.
#[derive(Debug)]
pub struct Faults {
    settings: Mutex<FaultSettings>,
    rng: Mutex<Xoshiro256PlusPlus>,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            settings: Mutex::new(FaultSettings::default()),
            // A different stream from the data generator's.
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(
                seed ^ 0x5eed_fa17_5eed_fa17,
            )),
        }
    }

    pub fn settings(&self) -> FaultSettings {
        lock(&self.settings).clone()
    }

    pub fn replace(&self, settings: FaultSettings) {
        *lock(&self.settings) = settings;
    }

    /// Draws the faults for one request.
    pub fn plan(&self) -> Plan {
        let s = self.settings();
        let mut rng = lock(&self.rng);
        let mut roll = |rate: f64| rate > 0.0 && rng.random::<f64>() < rate;
        let throttle = roll(s.throttle_rate);
        let error = roll(s.error_rate);
        let malformed = roll(s.malformed_rate);
        let truncate = !malformed && roll(s.truncate_rate);
        let bad = roll(s.bad_record_rate);
        let bad_record = bad.then(|| {
            let pick = rng.random::<u64>();
            let kind = match rng.random_range(0..3u32) {
                0 => BadKind::MissingId,
                1 => BadKind::BadDate(
                    "modification_date",
                    BAD_DATES[rng.random_range(0..BAD_DATES.len())],
                ),
                _ => BadKind::BadDate(
                    "creation_date",
                    BAD_DATES[rng.random_range(0..BAD_DATES.len())],
                ),
            };
            (pick, kind)
        });
        let shuffle = s.unsorted.then(|| rng.random::<u64>());
        Plan {
            latency: Duration::from_millis(s.latency_ms),
            retry_after: s.retry_after,
            error_status: StatusCode::from_u16(s.error_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            throttle,
            error,
            malformed,
            truncate,
            bad_record,
            shuffle,
        }
    }
}

/// Poisoning only happens if a holder panicked; the data is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns a page of stored orders into the record JSONs to send, applying
/// `unsorted` and `bad_record_rate`.
pub fn shape_records(plan: &Plan, orders: &[Arc<StoredOrder>]) -> Vec<Bytes> {
    let mut records: Vec<Bytes> = orders.iter().map(|o| o.json.clone()).collect();
    if let Some(seed) = plan.shuffle
        && records.len() > 1
    {
        let original = records.clone();
        records.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
        if records == original {
            // A shuffle may leave a short page in order; "unsorted" promises
            // otherwise.
            records.rotate_left(1);
        }
    }
    if let Some((pick, kind)) = plan.bad_record
        && !records.is_empty()
    {
        let i = usize::try_from(pick % records.len() as u64).unwrap_or(0);
        records[i] = corrupt(&records[i], kind);
    }
    records
}

fn corrupt(json: &Bytes, kind: BadKind) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return json.clone();
    };
    if let Some(obj) = value.as_object_mut() {
        match kind {
            BadKind::MissingId => {
                obj.shift_remove("id");
            }
            BadKind::BadDate(field, text) => {
                obj.insert(field.into(), serde_json::Value::String(text.into()));
            }
        }
    }
    serde_json::to_vec(&value).map_or_else(|_| json.clone(), Bytes::from)
}

/// A 200 response for a finished page body, unless `malformed`/`truncate`
/// say otherwise.
pub fn page_response(plan: &Plan, mut headers: HeaderMap, mut body: Vec<u8>) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if plan.malformed {
        // Any strict prefix of a JSON object or array is invalid JSON.
        let keep = (body.len() * 2 / 3)
            .max(1)
            .min(body.len().saturating_sub(1));
        body.truncate(keep);
        mark(&mut headers, "malformed");
        return (StatusCode::OK, headers, body).into_response();
    }
    if plan.truncate {
        mark(&mut headers, "truncate");
        let full = body.len();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full));
        let half = Bytes::from(body).slice(..full / 2);
        // Yield once between the half body and the error: hyper flushes what
        // it has while the body is pending, so the client receives the head
        // and half the body before the connection drops.
        let stream = futures::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(
            futures::stream::once(async {
                tokio::task::yield_now().await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "sandbox fault: body truncated",
                ))
            }),
        );
        return (StatusCode::OK, headers, Body::from_stream(stream)).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
}

fn mark(headers: &mut HeaderMap, fault: &'static str) {
    headers.insert(
        HeaderName::from_static("x-sandbox-fault"),
        HeaderValue::from_static(fault),
    );
}

/// Keap's informational quota and throttle counters.
///
/// They count requests like the real gateway and are sent on every
/// authenticated Keap API response. They are informational only: the sandbox
/// never throttles on its own; 429s come from `throttle_rate` alone. A client
/// that honours them (waits while `x-keap-product-throttle-available` is 0)
/// is throttled all the same, so a benchmark of many tenants on one sandbox,
/// whose real limits apply per tenant, raises the limits instead.
#[derive(Debug)]
pub struct Quota {
    throttle_per_minute: u64,
    quota_per_day: u64,
    inner: Mutex<QuotaWindow>,
}

impl Default for Quota {
    /// Keap's limits: 1500 requests a minute, 150,000 a day.
    fn default() -> Self {
        Self::new(DEFAULT_THROTTLE_PER_MINUTE, DEFAULT_QUOTA_PER_DAY)
    }
}

#[derive(Debug, Default)]
struct QuotaWindow {
    day: i64,
    day_used: u64,
    minute: i64,
    minute_used: u64,
}

impl Quota {
    /// Counters reporting these limits.
    pub fn new(throttle_per_minute: u64, quota_per_day: u64) -> Self {
        Self {
            throttle_per_minute,
            quota_per_day,
            inner: Mutex::new(QuotaWindow::default()),
        }
    }

    /// Counts one request at `now` and returns the headers to send.
    pub fn count(&self, now: DateTime<Utc>, throttled: bool) -> HeaderMap {
        let (day_used, minute_used) = {
            let mut w = lock(&self.inner);
            let day = i64::from(now.num_days_from_ce());
            let minute = now.timestamp().div_euclid(60);
            if w.day != day {
                w.day = day;
                w.day_used = 0;
            }
            if w.minute != minute {
                w.minute = minute;
                w.minute_used = 0;
            }
            w.day_used += 1;
            w.minute_used += 1;
            (w.day_used, w.minute_used)
        };
        let expiry = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |t| t.and_utc().timestamp_millis());
        let throttle_available = if throttled {
            0
        } else {
            self.throttle_per_minute.saturating_sub(minute_used)
        };
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-keap-product-quota-limit", self.quota_per_day.to_string());
        put("x-keap-product-quota-time-unit", "day".into());
        put("x-keap-product-quota-interval", "1".into());
        put(
            "x-keap-product-quota-available",
            self.quota_per_day.saturating_sub(day_used).to_string(),
        );
        put("x-keap-product-quota-used", day_used.to_string());
        put("x-keap-product-quota-expiry-time", expiry.to_string());
        put(
            "x-keap-product-throttle-limit",
            self.throttle_per_minute.to_string(),
        );
        put("x-keap-product-throttle-time-unit", "minute".into());
        put("x-keap-product-throttle-interval", "1".into());
        put(
            "x-keap-product-throttle-available",
            throttle_available.to_string(),
        );
        put("x-keap-product-throttle-used", minute_used.to_string());
        h
    }
}

/// Adds `Retry-After` (per the plan) and a provider-clock `Date` so that an
/// HTTP-date can be read relative to the provider's own time.
fn retry_headers(plan: &Plan, now: DateTime<Utc>, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&http_date(now)) {
        headers.insert(header::DATE, v);
    }
    let value = match plan.retry_after {
        RetryAfter::Seconds => RETRY_AFTER_SECONDS.to_string(),
        // Whole seconds only in an HTTP-date: round up, then add the wait.
        RetryAfter::HttpDate => {
            let up = if now.timestamp_subsec_nanos() > 0 {
                1
            } else {
                0
            };
            let at = now + TimeDelta::seconds(RETRY_AFTER_SECONDS + up);
            http_date(at)
        }
        RetryAfter::None => return,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::RETRY_AFTER, v);
    }
}

/// Keap's 429: the quota-violation fault document Keap announced for its
/// Apigee gateway (the headers are Keap's documented `x-keap-product-*`).
pub fn keap_throttled(
    plan: &Plan,
    now: DateTime<Utc>,
    mut headers: HeaderMap,
    client: &str,
) -> Response {
    retry_headers(plan, now, &mut headers);
    mark(&mut headers, "throttle");
    let body = serde_json::json!({
        "fault": {
            "faultstring": format!("Rate limit quota violation. Quota limit  exceeded. Identifier : {client}"),
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}
        }
    });
    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
}

/// Keap's 5xx: the gateway's fault document for 503, the service's
/// `{"message": …}` otherwise.
pub fn keap_error(plan: &Plan, mut headers: HeaderMap) -> Response {
    mark(&mut headers, "error");
    let status = plan.error_status;
    let body = if status == StatusCode::SERVICE_UNAVAILABLE {
        serde_json::json!({
            "fault": {
                "faultstring": "The Service is temporarily unavailable",
                "detail": {"errorcode": "messaging.adaptors.http.flow.ServiceUnavailable"}
            }
        })
    } else {
        serde_json::json!({"message": status.canonical_reason().unwrap_or("Error")})
    };
    (status, headers, axum::Json(body)).into_response()
}

/// The hub's 429 (Open Connectors passes the provider's throttle on).
pub fn hub_throttled(plan: &Plan, now: DateTime<Utc>) -> Response {
    let mut headers = HeaderMap::new();
    retry_headers(plan, now, &mut headers);
    mark(&mut headers, "throttle");
    hub_message(
        StatusCode::TOO_MANY_REQUESTS,
        headers,
        "Rate limit exceeded at the provider. Please retry later.",
    )
}

/// The hub's error status.
pub fn hub_error(plan: &Plan) -> Response {
    let mut headers = HeaderMap::new();
    mark(&mut headers, "error");
    let reason = plan.error_status.canonical_reason().unwrap_or("Error");
    hub_message(
        plan.error_status,
        headers,
        &format!("The provider returned an error: {reason}"),
    )
}

/// Open Connectors' error document: a request id and a message.
pub fn hub_message(status: StatusCode, headers: HeaderMap, message: &str) -> Response {
    let body = serde_json::json!({
        "requestId": uuid::Uuid::new_v4().simple().to_string(),
        "message": message,
    });
    (status, headers, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_keeps_absent_keys_and_refuses_bad_values() {
        let base = FaultSettings::default();
        let p: FaultPatch = serde_json::from_str(r#"{"error_rate":0.5}"#).unwrap();
        let s = p.apply(&base).unwrap();
        assert_eq!(s.error_rate, 0.5);
        assert_eq!(s.error_status, 503);
        let empty: FaultPatch = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.apply(&s).unwrap(), s);
        let bad: FaultPatch = serde_json::from_str(r#"{"throttle_rate":1.5}"#).unwrap();
        assert_eq!(bad.apply(&s).unwrap_err().0, "throttle_rate");
        assert!(serde_json::from_str::<FaultPatch>(r#"{"nope":1}"#).is_err());
        let retry: FaultPatch = serde_json::from_str(r#"{"retry_after":"http-date"}"#).unwrap();
        assert_eq!(retry.retry_after, Some(RetryAfter::HttpDate));
    }

    #[test]
    fn quota_headers_report_the_configured_limits() {
        let now = DateTime::parse_from_rfc3339("2024-03-01T09:00:30Z")
            .unwrap()
            .to_utc();
        let header = |h: &HeaderMap, name: &str| h[name].to_str().unwrap().to_owned();

        let keap = Quota::default().count(now, false);
        assert_eq!(header(&keap, "x-keap-product-throttle-limit"), "1500");
        assert_eq!(header(&keap, "x-keap-product-throttle-available"), "1499");
        assert_eq!(header(&keap, "x-keap-product-quota-limit"), "150000");
        assert_eq!(header(&keap, "x-keap-product-quota-available"), "149999");

        let bench = Quota::new(100_000_000, 2_000_000_000);
        bench.count(now, false);
        let h = bench.count(now, false);
        assert_eq!(header(&h, "x-keap-product-throttle-limit"), "100000000");
        assert_eq!(header(&h, "x-keap-product-throttle-available"), "99999998");
        assert_eq!(header(&h, "x-keap-product-throttle-used"), "2");
        assert_eq!(header(&h, "x-keap-product-quota-limit"), "2000000000");
        assert_eq!(header(&h, "x-keap-product-quota-available"), "1999999998");
        // A throttled answer still says nothing is left this minute.
        let throttled = bench.count(now, true);
        assert_eq!(header(&throttled, "x-keap-product-throttle-available"), "0");
    }

    #[test]
    fn corrupted_records_lose_the_id_or_the_date() {
        let json =
            Bytes::from_static(br#"{"id":1,"modification_date":"2020-01-01T00:00:00.000+0000"}"#);
        let v: serde_json::Value =
            serde_json::from_slice(&corrupt(&json, BadKind::MissingId)).unwrap();
        assert!(v.get("id").is_none());
        let v: serde_json::Value = serde_json::from_slice(&corrupt(
            &json,
            BadKind::BadDate("modification_date", "not a date"),
        ))
        .unwrap();
        assert_eq!(v["modification_date"], "not a date");
    }
}
