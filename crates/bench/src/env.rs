//! What every run shares: the binaries under test, the broker, where logs
//! go, and names unique to this invocation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, ensure};

/// The binaries, the broker and the working directory of one invocation.
#[derive(Debug)]
pub struct Env {
    pub poller: PathBuf,
    pub sandbox: PathBuf,
    pub bootstrap: String,
    /// Logs and instance files of this invocation: `<work>/runs/<run id>`.
    pub dir: PathBuf,
    run_id: String,
    seq: AtomicU32,
}

impl Env {
    /// Checks that both binaries exist and creates this invocation's
    /// directory under `work`.
    pub fn new(poller: PathBuf, sandbox: PathBuf, bootstrap: String, work: &Path) -> Result<Self> {
        for (what, path) in [("event-poller", &poller), ("keap-sandbox", &sandbox)] {
            ensure!(
                path.is_file(),
                "{what} binary {} not found (build it: cargo build --release --workspace --bins)",
                path.display()
            );
        }
        let run_id = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%d%H%M%S"),
            std::process::id()
        );
        let dir = work.join("runs").join(&run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self {
            poller,
            sandbox,
            bootstrap,
            dir,
            run_id,
            seq: AtomicU32::new(0),
        })
    }

    /// `bench-<run id>-<n>-<what>`: never the same twice, so runs do not
    /// see each other's topics or groups.
    pub fn unique(&self, what: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("bench-{}-{n}-{what}", self.run_id)
    }

    /// A fresh directory under this invocation's directory.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }
}

/// Removes earlier invocations' directories under `work/runs` (logs of a
/// jobs run reach hundreds of megabytes).
pub fn clear_runs(work: &Path) -> Result<()> {
    let runs = work.join("runs");
    if runs.exists() {
        std::fs::remove_dir_all(&runs).with_context(|| format!("remove {}", runs.display()))?;
    }
    Ok(())
}
