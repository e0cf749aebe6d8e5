//! Everything one `poller-bench all` measured, as written to JSON and read
//! by the report.

use serde::{Deserialize, Serialize};

use crate::backfill::BackfillRun;
use crate::jobs::JobsRun;
use crate::latency::LatencyRun;
use crate::limit::LimitRun;
use crate::machine::Machine;
use crate::peer::PeerStatus;
use crate::stats::median;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// `full` or `quick`.
    pub mode: String,
    pub machine: Machine,
    pub wall_seconds: f64,
    /// Wall time of each section, in run order.
    pub sections: Vec<(String, f64)>,
    pub limit: Vec<LimitRun>,
    pub backfill: Vec<BackfillSet>,
    pub jobs: Vec<JobsRun>,
    pub latency: Option<LatencyRun>,
    pub peer: PeerStatus,
    /// Changes of plan (a size run fewer times to fit), in words.
    pub notes: Vec<String>,
    /// Runs that failed; the process exits non-zero when there is one.
    pub errors: Vec<String>,
}

/// The runs of one backfill size, on one seeded sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillSet {
    pub orders: usize,
    pub planned_runs: usize,
    pub seed_seconds: Option<f64>,
    pub runs: Vec<BackfillRun>,
}

impl Results {
    /// Median records/s of the limit runs of one kind.
    pub fn limit_median(&self, transactional: bool) -> Option<f64> {
        let xs: Vec<f64> = self
            .limit
            .iter()
            .filter(|r| r.transactional == transactional)
            .map(|r| r.records_per_second)
            .collect();
        median(&xs)
    }
}

impl BackfillSet {
    /// The median of `f` over the runs.
    pub fn median_of(&self, f: impl Fn(&BackfillRun) -> f64) -> Option<f64> {
        let xs: Vec<f64> = self.runs.iter().map(f).collect();
        median(&xs)
    }
}

/// Where `all` keeps its raw numbers by default: apart per mode, so a
/// smoke run never replaces the numbers behind a full report.
pub fn file_name(quick: bool) -> &'static str {
    if quick {
        "results-quick.json"
    } else {
        "results.json"
    }
}
