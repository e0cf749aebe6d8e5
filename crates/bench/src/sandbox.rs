//! The Keap sandbox as a child process (the release binary), and its
//! control API (`/_sandbox/...`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::env::Env;

/// The OAuth client every benchmark instance uses.
pub const CLIENT_ID: &str = "bench";
pub const CLIENT_SECRET: &str = "bench-secret";

/// Limits reported in the quota headers when many tenants share one
/// sandbox (their real limits apply per tenant).
pub const UNLIMITED: u64 = 100_000_000;

/// How to start the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// One-time authorization codes (more can be minted later).
    pub codes: Vec<String>,
    pub create_rate: f64,
    pub update_rate: f64,
    pub timestamp_millis: bool,
    /// Report [`UNLIMITED`] throttle and quota instead of Keap's limits.
    pub unlimited: bool,
}

/// A running `keap-sandbox`; killed when dropped.
#[derive(Debug)]
pub struct Sandbox {
    child: Child,
    /// Kept open: the sandbox owns its stdout for its whole life.
    _stdout: BufReader<ChildStdout>,
    pub base: String,
    http: reqwest::Client,
}

impl Sandbox {
    /// Starts the sandbox on a free port (it prints `listening on
    /// http://ADDR` first) with OAuth on; its log goes to `log`.
    pub async fn start(env: &Env, opts: &Options, log: &Path) -> Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(&env.sandbox);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            .args(["--create-rate", &opts.create_rate.to_string()])
            .args(["--update-rate", &opts.update_rate.to_string()]);
        for code in &opts.codes {
            cmd.args(["--authorization-code", code]);
        }
        if opts.timestamp_millis {
            cmd.arg("--timestamp-millis");
        }
        if opts.unlimited {
            let n = UNLIMITED.to_string();
            cmd.args(["--throttle-per-minute", &n, "--quota-per-day", &n]);
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", env.sandbox.display()))?;
        let stdout = child.stdout.take().context("sandbox stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first))
            .await
            .context("the sandbox printed no address within 30 s")?
            .context("read the sandbox's stdout")?;
        let Some(base) = first.trim().strip_prefix("listening on ") else {
            let status = child.try_wait().ok().flatten();
            bail!(
                "the sandbox did not start (exit {status:?}, first line {first:?}); log: {}",
                log.display()
            );
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            base: base.to_owned(),
            child,
            _stdout: stdout,
            http,
        })
    }

    /// `/proc` reading of the sandbox now (its CPU competes with the
    /// worker's for the same cores).
    pub fn sample(&self) -> Result<crate::procfs::ProcSample> {
        let pid = self.child.id().context("the sandbox has exited")?;
        crate::procfs::sample(pid).context("read the sandbox's /proc entry")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: body"))?;
        if !status.is_success() {
            bail!("{method} {url}: {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: JSON"))
    }

    /// `POST /_sandbox/orders {"count": n}`.
    pub async fn create_orders(&self, count: usize) -> Result<()> {
        let body = json!({ "count": count });
        self.call(reqwest::Method::POST, "/_sandbox/orders", Some(body))
            .await
            .map(drop)
    }

    /// `PUT /_sandbox/clock {"offset_seconds": offset}`.
    pub async fn set_clock(&self, offset_seconds: i64) -> Result<()> {
        let body = json!({ "offset_seconds": offset_seconds });
        self.call(reqwest::Method::PUT, "/_sandbox/clock", Some(body))
            .await
            .map(drop)
    }

    /// `POST /_sandbox/codes`: a fresh one-time authorization code.
    pub async fn mint_code(&self) -> Result<String> {
        let v = self
            .call(reqwest::Method::POST, "/_sandbox/codes", None)
            .await?;
        v["code"]
            .as_str()
            .map(str::to_owned)
            .context("POST /_sandbox/codes: no code in the answer")
    }

    /// `GET /_sandbox/stats`: responses served, by endpoint and status.
    pub async fn stats(&self) -> Result<Value> {
        self.call(reqwest::Method::GET, "/_sandbox/stats", None)
            .await
    }

    /// Creates `n` orders in batches of 1000, spread evenly over the hour
    /// before now on the provider's clock (at most ten seconds apart, as
    /// `benches/backfill-memory.sh` does), then restores the clock.
    /// Returns how long it took.
    pub async fn seed_orders(&self, n: usize) -> Result<Duration> {
        const BATCH: usize = 1000;
        let started = Instant::now();
        let batches = n.div_ceil(BATCH);
        let spacing = i64::try_from((3600 / batches.max(1)).clamp(1, 10)).unwrap_or(1);
        for i in 0..batches {
            let offset = i64::try_from(batches - i).context("batch count")? * spacing;
            self.set_clock(-offset).await?;
            self.create_orders(BATCH.min(n - i * BATCH)).await?;
        }
        self.set_clock(0).await?;
        Ok(started.elapsed())
    }
}

/// Requests served for `endpoint` (`GET /crm/rest/v1/orders`), any status,
/// in a `GET /_sandbox/stats` answer.
pub fn served(stats: &Value, endpoint: &str) -> u64 {
    stats["requests"][endpoint]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
