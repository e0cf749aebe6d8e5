//! `event-poller run` as a child process: started with its own topics and
//! group, scraped on its ops port, stopped with SIGTERM; killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::env::Env;
use crate::metrics::{self, Scrape};
use crate::procfs::{self, ProcSample};

/// Topics and group of one run, unique to it.
#[derive(Debug, Clone)]
pub struct Names {
    pub events: String,
    pub state: String,
    pub dlq: String,
    pub group: String,
}

impl Names {
    pub fn new(env: &Env, what: &str) -> Self {
        let base = env.unique(what);
        Self {
            events: format!("{base}.events"),
            state: format!("{base}.state"),
            dlq: format!("{base}.dlq"),
            group: format!("{base}.workers"),
        }
    }
}

/// Partitions of the topics the worker creates.
pub const PARTITIONS: u32 = 6;

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    pid: u32,
    /// `127.0.0.1:PORT` of `/metrics`.
    pub ops: String,
    pub log: PathBuf,
    /// When the process was started.
    pub started: Instant,
    http: reqwest::Client,
}

impl Worker {
    /// Starts `event-poller run` on the instance files in `instances`, its
    /// JSON log to `log`, with settings like the integration tests'.
    pub fn start(
        env: &Env,
        names: &Names,
        instances: &Path,
        log: &Path,
        extra_env: &[(&str, String)],
    ) -> Result<Self> {
        let ops = format!("127.0.0.1:{}", free_port()?);
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let key = state_key()?;
        let mut cmd = Command::new(&env.poller);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KAFKA_BOOTSTRAP_SERVERS", &env.bootstrap)
            .env("EVENTS_TOPIC", &names.events)
            .env("STATE_TOPIC", &names.state)
            .env("DLQ_TOPIC", &names.dlq)
            .env("WORKER_GROUP_ID", &names.group)
            .env("TOPIC_PARTITIONS", PARTITIONS.to_string())
            .env("INSTANCES_PATH", instances)
            .env("STATE_ENCRYPTION_KEY", key)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .env("OPS_LISTEN", &ops)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        // `BENCH_WORKER_X=v` sets the worker's `X=v`: settings are compared
        // by running the same bench with and without them.
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix("BENCH_WORKER_") {
                cmd.env(name, v);
            }
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", env.poller.display()))?;
        let pid = child.id().context("worker pid")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            child,
            pid,
            ops,
            log: log.to_owned(),
            started,
            http,
        })
    }

    /// Fails (with the log's tail) if the process has ended.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait().context("wait for the worker")? {
            None => Ok(()),
            Some(status) => bail!(
                "the worker exited ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail(20)
            ),
        }
    }

    /// A `read_committed` reader of the events topic, once the worker has
    /// created it (within `timeout`, or the worker's exit is the error).
    pub async fn events_reader(
        &mut self,
        env: &Env,
        names: &Names,
        timeout: Duration,
        fetch_wait: Duration,
    ) -> Result<rdkafka::consumer::StreamConsumer> {
        let partitions = tokio::select! {
            p = crate::kafka::await_topic(&env.bootstrap, &names.events, timeout) => p?,
            e = self.exited() => return Err(e),
        };
        crate::kafka::committed_reader(
            &env.bootstrap,
            &env.unique("reader"),
            &names.events,
            partitions,
            fetch_wait,
        )
    }

    /// Completes (with the reason) only when the process has ended: race it
    /// against a wait so that a crashed worker fails the run at once.
    pub async fn exited(&mut self) -> anyhow::Error {
        loop {
            if let Err(e) = self.check_alive() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last `n` lines of the worker's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(n).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// One scrape of `/metrics`: the families named (all when empty).
    pub async fn metrics(&self, families: &[&str]) -> Result<Scrape> {
        metrics::scrape(&self.http, &self.ops, families).await
    }

    /// Waits until `/metrics` answers (the ops endpoint is up).
    pub async fn await_ops(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if self.metrics(&[metrics::POLLS]).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the worker's ops endpoint {} did not answer within {timeout:?}; log tail:\n{}",
                    self.ops,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/proc` reading of the worker now.
    pub fn sample(&self) -> Result<ProcSample> {
        procfs::sample(self.pid).context("read the worker's /proc entry")
    }

    /// SIGTERM, then waits up to a minute for a clean exit (SIGKILL
    /// after that). Returns the exit code.
    pub async fn stop(mut self) -> Result<Option<i32>> {
        let pid = self.pid.to_string();
        if self.child.try_wait().ok().flatten().is_none() {
            let status = Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .context("kill -TERM the worker")?;
            if !status.success() {
                bail!("kill -TERM {pid}: {status}");
            }
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => Ok(status.context("wait for the worker")?.code()),
            Err(_) => {
                self.child.kill().await.context("kill the worker")?;
                bail!("the worker did not stop within 60 s of SIGTERM; killed");
            }
        }
    }
}

/// A port nobody listens on right now (the OS picks it; the worker binds it
/// a moment later).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr().context("free port")?.port())
}

/// 32 random bytes, base64: the key that seals OAuth tokens in the state
/// topic.
fn state_key() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read 32 random bytes")?;
    Ok(base64(&bytes))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // The tests' demo key.
        assert_eq!(
            base64(b"demo-key-demo-key-demo-key-00000"),
            "ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktMDAwMDA="
        );
        assert_eq!(state_key().unwrap().len(), 44);
    }
}
