//! The control API under `/_sandbox/`: how tests, demos and benchmarks
//! drive the simulated store. Its shapes are a contract other tools rely on.
//! It needs no authentication and is never subject to faults.
//!
//! Bodies are read as JSON whatever the `Content-Type` (so `curl -d` works);
//! an empty body (or `null`) means `{}`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Sandbox;
use super::clock::format_keap;
use super::faults::{FaultPatch, FaultSettings, lock};
use super::respond::{ParamError, message};
use super::store::Change;

/// The most orders one `POST /_sandbox/orders` may create.
const MAX_CREATE: usize = 100_000;

fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ParamError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ParamError::new("body", format!("invalid JSON: {e}")))
}

fn parse_id(text: &str) -> Result<u64, ParamError> {
    text.parse()
        .map_err(|_| ParamError::new("id", format!("'{text}' is not an order id")))
}

fn raw_json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default = "one")]
    count: usize,
    /// Pads each new order's `notes` to this many bytes: large orders for
    /// size limits and memory measurements.
    #[serde(default)]
    notes_bytes: Option<usize>,
}

impl Default for CreateBody {
    fn default() -> Self {
        Self {
            count: 1,
            notes_bytes: None,
        }
    }
}

/// The largest `notes_bytes` one order may ask for.
const MAX_NOTES_BYTES: usize = 16 << 20;

fn one() -> usize {
    1
}

/// `POST /_sandbox/orders {"count": N, "notes_bytes": B}` → `{"ids": [...]}`
pub async fn create_orders(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: CreateBody = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !(1..=MAX_CREATE).contains(&req.count) {
        return ParamError::new("count", format!("must be between 1 and {MAX_CREATE}"))
            .into_response();
    }
    if req.notes_bytes.is_some_and(|b| b > MAX_NOTES_BYTES) {
        return ParamError::new("notes_bytes", format!("must be at most {MAX_NOTES_BYTES}"))
            .into_response();
    }
    let ids = lock(&sb.0.store).create(req.count, req.notes_bytes);
    axum::Json(serde_json::json!({ "ids": ids })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TouchBody {
    /// Dates the change this many seconds after the provider's now.
    #[serde(default)]
    ahead_seconds: i64,
}

/// `POST /_sandbox/orders/{id}/touch {"ahead_seconds": N}` → the updated order
pub async fn touch_order(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let req: TouchBody = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if req.ahead_seconds.abs() > 100 * 366 * 86_400 {
        return ParamError::new("ahead_seconds", "must be within ±100 years").into_response();
    }
    let ahead = chrono::TimeDelta::seconds(req.ahead_seconds);
    let touched = lock(&sb.0.store).touch_dated(id, ahead);
    match touched {
        Some(order) => raw_json(StatusCode::OK, order.json.clone()),
        None => message(StatusCode::NOT_FOUND, format!("Order {id} not found")),
    }
}

/// `DELETE /_sandbox/orders/{id}` → 204
pub async fn delete_order(State(sb): State<Sandbox>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if lock(&sb.0.store).delete(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        message(StatusCode::NOT_FOUND, format!("Order {id} not found"))
    }
}

/// `POST /_sandbox/codes` → `{"code": "..."}`
pub async fn mint_code(State(sb): State<Sandbox>) -> Response {
    let code = lock(&sb.0.tokens).mint_code();
    axum::Json(serde_json::json!({ "code": code })).into_response()
}

/// `POST /_sandbox/revoke` → 204: every access and refresh token is void.
pub async fn revoke_tokens(State(sb): State<Sandbox>) -> Response {
    lock(&sb.0.tokens).revoke_all();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sandbox/faults`
pub async fn get_faults(State(sb): State<Sandbox>) -> axum::Json<FaultSettings> {
    axum::Json(sb.0.faults.settings())
}

/// `PUT /_sandbox/faults` with any subset of the settings → all settings
pub async fn put_faults(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let patch: FaultPatch = match json_body(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let current = sb.0.faults.settings();
    let next = match patch.apply(&current) {
        Ok(n) => n,
        Err((key, why)) => return ParamError::new(key, why).into_response(),
    };
    set_faults(&sb, next.clone());
    axum::Json(next).into_response()
}

/// `DELETE /_sandbox/faults` → all settings, cleared
pub async fn clear_faults(State(sb): State<Sandbox>) -> Response {
    let cleared = FaultSettings::default();
    set_faults(&sb, cleared.clone());
    axum::Json(cleared).into_response()
}

fn set_faults(sb: &Sandbox, settings: FaultSettings) {
    let shared = settings.shared_timestamps;
    sb.0.faults.replace(settings);
    lock(&sb.0.store).set_shared_timestamps(shared);
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct ClockState {
    offset_seconds: i64,
    now: String,
}

fn clock_state(sb: &Sandbox) -> ClockState {
    ClockState {
        offset_seconds: sb.0.clock.offset_seconds(),
        now: format_keap(sb.0.clock.now()),
    }
}

/// `GET /_sandbox/clock` → `{"offset_seconds": N, "now": "..."}`
pub async fn get_clock(State(sb): State<Sandbox>) -> Response {
    axum::Json(clock_state(&sb)).into_response()
}

/// `PUT /_sandbox/clock {"offset_seconds": N}` → the new clock state
pub async fn put_clock(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let req: ClockBody = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(offset) = req.offset_seconds else {
        return ParamError::new("offset_seconds", "is required").into_response();
    };
    // ±100 years keeps every date representable.
    if offset.abs() > 100 * 366 * 86_400 {
        return ParamError::new("offset_seconds", "must be within ±100 years").into_response();
    }
    sb.0.clock.set_offset_seconds(offset);
    axum::Json(clock_state(&sb)).into_response()
}

#[derive(Serialize)]
struct ChangesDoc<'a> {
    changes: &'a [Change],
}

/// `GET /_sandbox/changes` → `{"changes": [...]}`, every change in order.
///
/// Serialized under the store lock so the log is one consistent snapshot.
pub async fn changes(State(sb): State<Sandbox>) -> Response {
    let body = {
        let store = lock(&sb.0.store);
        serde_json::to_vec(&ChangesDoc {
            changes: store.changes(),
        })
    };
    match body {
        Ok(b) => raw_json(StatusCode::OK, b),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /_sandbox/stats` → request counts by endpoint and status
pub async fn stats(State(sb): State<Sandbox>) -> Response {
    axum::Json(sb.0.stats.to_json()).into_response()
}
