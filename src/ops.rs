//! The operations endpoint on `OPS_LISTEN`: `/metrics` (Prometheus text
//! 0.0.4), `/healthz` (the process runs) and `/readyz` (the worker owns its
//! state partitions and polls their jobs).
//!
//! [`Readiness`] is what the worker reports to it: group joined, each owned
//! partition taking over (fence → restore) or scheduled, shutting down.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::telemetry::events::ReadinessChanged;
use crate::telemetry::metrics::{CONTENT_TYPE, Metrics};

/// The worker's readiness, as `/readyz` reports it. Ready means: the worker
/// has joined its group (an assignment arrived, possibly empty), every
/// state partition it owns finished fence + restore and runs its jobs, and
/// shutdown has not begun.
#[derive(Debug, Default)]
pub struct Readiness {
    state: Mutex<ReadyState>,
}

#[derive(Debug, Default)]
struct ReadyState {
    joined: bool,
    stopping: bool,
    /// Why the process cannot go on (it is about to exit non-zero).
    failed: Option<String>,
    /// Owned state partitions → scheduled (fence and restore done).
    partitions: BTreeMap<i32, bool>,
    /// What needs an operator, by partition: one tenant's trouble is shown,
    /// but never takes the worker out of service.
    attention: BTreeMap<i32, BTreeMap<String, Attention>>,
}

/// Something on one job or instance that needs an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    /// The job's checkpoint does not decode: the job is not polled.
    UnreadableCheckpoint { detail: String },
    /// The provider refused the instance's grant.
    NeedsAuthorization,
}

impl Attention {
    fn line(&self, subject: &str) -> String {
        match self {
            Attention::UnreadableCheckpoint { detail } => {
                format!("blocked: job {subject}: unreadable checkpoint ({detail})")
            }
            Attention::NeedsAuthorization => format!(
                "needs authorization: instance {subject}: put a new authorization code in its providerData.code and restart"
            ),
        }
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyStatus {
    /// Waiting for the group's first assignment.
    Joining,
    /// Some owned partitions are still being fenced or restored.
    TakingOver {
        scheduled: usize,
        owned: usize,
    },
    Ready {
        owned: usize,
    },
    /// Shutdown began: no new polls; in-flight ones finish.
    Stopping,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ReadyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change`, then reports the new state as gauges.
    fn update(&self, change: impl FnOnce(&mut ReadyState)) {
        self.update_if(|s| {
            change(s);
            true
        });
    }

    /// Like [`Readiness::update`], reporting only when `change` says it
    /// changed something (it runs after every poll).
    fn update_if(&self, change: impl FnOnce(&mut ReadyState) -> bool) {
        let mut s = self.lock();
        if !change(&mut s) {
            return;
        }
        let all = || s.attention.values().flat_map(BTreeMap::values);
        ReadinessChanged {
            owned_partitions: s.partitions.len(),
            ready: matches!(s.status(), ReadyStatus::Ready { .. }),
            blocked_jobs: all()
                .filter(|a| matches!(a, Attention::UnreadableCheckpoint { .. }))
                .count(),
            needing_authorization: all()
                .filter(|a| matches!(a, Attention::NeedsAuthorization))
                .count(),
        }
        .emit();
    }

    /// `subject` (a job or an instance of `partition`) needs an operator
    /// (`Some`), or no longer does (`None`).
    pub fn attention(&self, partition: i32, subject: &str, what: Option<Attention>) {
        self.update_if(|s| {
            let entries = s.attention.entry(partition).or_default();
            if entries.get(subject) == what.as_ref() {
                return false;
            }
            match what {
                Some(a) => entries.insert(subject.to_string(), a),
                None => entries.remove(subject),
            };
            true
        });
    }

    /// One line per job or instance that needs an operator.
    pub fn details(&self) -> Vec<String> {
        let s = self.lock();
        s.attention
            .values()
            .flat_map(|m| m.iter().map(|(subject, a)| a.line(subject)))
            .collect()
    }

    /// The group assigned partitions to this worker (maybe none).
    pub fn joined(&self) {
        self.update(|s| s.joined = true);
    }

    /// `partition` is owned and being fenced and restored (again, after a
    /// fatal producer error).
    pub fn taking_over(&self, partition: i32) {
        self.update(|s| {
            s.partitions.insert(partition, false);
        });
    }

    /// `partition` is fenced and restored; its jobs are scheduled.
    pub fn scheduled(&self, partition: i32) {
        self.update(|s| {
            s.partitions.insert(partition, true);
        });
    }

    /// `partition` was revoked and its jobs have stopped.
    pub fn released(&self, partition: i32) {
        self.update(|s| {
            s.partitions.remove(&partition);
            s.attention.remove(&partition);
        });
    }

    /// The worker cannot go on; `/healthz` says so until the process ends.
    pub fn failed(&self, reason: &str) {
        self.update(|s| {
            s.failed = Some(reason.to_string());
            s.stopping = true;
        });
    }

    /// Why the worker cannot go on, once it cannot.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// Shutdown began; never ready again.
    pub fn stopping(&self) {
        self.update(|s| s.stopping = true);
    }

    pub fn status(&self) -> ReadyStatus {
        self.lock().status()
    }
}

impl ReadyState {
    fn status(&self) -> ReadyStatus {
        let s = self;
        let owned = s.partitions.len();
        let scheduled = s.partitions.values().filter(|r| **r).count();
        if s.stopping {
            ReadyStatus::Stopping
        } else if !s.joined {
            ReadyStatus::Joining
        } else if scheduled < owned {
            ReadyStatus::TakingOver { scheduled, owned }
        } else {
            ReadyStatus::Ready { owned }
        }
    }
}

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub struct OpsState {
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
///
/// # Errors
/// Accepting connections failed.
pub async fn serve(
    listener: TcpListener,
    state: OpsState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.readiness.failure() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(reason) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unhealthy: {reason}\n"),
        ),
    }
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.readiness.status() {
        ReadyStatus::Ready { owned } => {
            let mut body = format!("ready: {owned} state partitions owned\n");
            for line in state.readiness.details() {
                body.push_str(&line);
                body.push('\n');
            }
            (StatusCode::OK, body)
        }
        ReadyStatus::Joining => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: joining the worker group\n".to_string(),
        ),
        ReadyStatus::TakingOver { scheduled, owned } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {scheduled} of {owned} state partitions fenced and restored\n"),
        ),
        ReadyStatus::Stopping => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn state() -> OpsState {
        OpsState {
            metrics: Metrics::isolated().1,
            readiness: Arc::new(Readiness::new()),
        }
    }

    async fn get(state: &OpsState, path: &str) -> (StatusCode, Option<String>, String) {
        let response = router(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn healthz_answers_while_the_process_runs() {
        let s = state();
        s.readiness.stopping();
        let (status, _, body) = get(&s, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
    }

    #[tokio::test]
    async fn healthz_fails_once_the_worker_cannot_go_on() {
        let s = state();
        s.readiness.failed("FENCED_INSTANCE_ID: fenced");
        let (status, _, body) = get(&s, "/healthz").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "unhealthy: FENCED_INSTANCE_ID: fenced\n");
        assert_eq!(s.readiness.status(), ReadyStatus::Stopping);
    }

    #[tokio::test]
    async fn readyz_follows_join_takeover_and_shutdown() {
        let s = state();
        let status = |s: &OpsState| {
            let s = s.clone();
            async move { get(&s, "/readyz").await.0 }
        };
        assert_eq!(status(&s).await, StatusCode::SERVICE_UNAVAILABLE);
        s.readiness.joined();
        s.readiness.taking_over(0);
        s.readiness.taking_over(2);
        s.readiness.scheduled(0);
        let (code, _, body) = get(&s, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("1 of 2"), "{body}");
        s.readiness.scheduled(2);
        assert_eq!(status(&s).await, StatusCode::OK);
        // A fatal producer error: the partition is fenced and restored again.
        s.readiness.taking_over(2);
        assert_eq!(status(&s).await, StatusCode::SERVICE_UNAVAILABLE);
        s.readiness.released(2);
        assert_eq!(status(&s).await, StatusCode::OK);
        s.readiness.stopping();
        let (code, _, body) = get(&s, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("shutting down"), "{body}");
    }

    #[tokio::test]
    async fn joined_without_partitions_is_ready() {
        let s = state();
        s.readiness.joined();
        assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_serve_the_registry_and_follow_readiness() {
        let (recorder, registry) = Metrics::isolated();
        let s = OpsState {
            metrics: registry,
            readiness: Arc::new(Readiness::new()),
        };
        metrics::with_local_recorder(&recorder, || {
            s.readiness.joined();
            s.readiness.taking_over(1);
            s.readiness.taking_over(2);
            s.readiness.scheduled(1);
        });
        let (status, content_type, text) = get(&s, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        for line in ["event_poller_owned_partitions 2", "event_poller_ready 0"] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        metrics::with_local_recorder(&recorder, || s.readiness.scheduled(2));
        let (_, _, text) = get(&s, "/metrics").await;
        assert!(text.lines().any(|l| l == "event_poller_ready 1"), "{text}");
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        assert_eq!(get(&state(), "/").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn serves_over_a_real_listener_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, state(), stop.clone().cancelled_owned()));
        let response = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}
