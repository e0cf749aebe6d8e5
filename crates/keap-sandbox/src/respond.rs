//! Small HTTP helpers shared by the endpoint modules: request-parameter
//! errors, the request's own origin (for `next` links), and JSON bodies.

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// A request parameter the sandbox cannot use: always a 400 whose JSON names
/// the parameter, never a panic or a 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
}

impl ParamError {
    pub fn new(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            parameter: parameter.into(),
            message: message.into(),
        }
    }

    /// The response, carrying `headers` (e.g. Keap's quota headers).
    pub fn respond(self, headers: HeaderMap) -> Response {
        let body = serde_json::json!({
            "message": format!("Invalid parameter '{}': {}", self.parameter, self.message),
            "parameter": self.parameter,
        });
        (StatusCode::BAD_REQUEST, headers, axum::Json(body)).into_response()
    }
}

impl IntoResponse for ParamError {
    fn into_response(self) -> Response {
        self.respond(HeaderMap::new())
    }
}

/// A JSON `{"message": …}` error with any status.
pub fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"message": text.into()})),
    )
        .into_response()
}

/// `http://host:port` as the client addressed us, so that `next` links point
/// back to the same origin. Falls back to the bound address when the `Host`
/// header is missing or not a plain authority.
pub fn origin(headers: &HeaderMap, bound: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{bound}"),
    }
}

/// Writes `records` as a JSON array into `out`, comma-separated.
pub fn push_array(out: &mut Vec<u8>, records: &[Bytes]) {
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.push(b']');
}

/// Writes `text` as a JSON string literal into `out`.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}
