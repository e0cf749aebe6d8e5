//! Memory, CPU time and threads of a running process, from `/proc`.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use serde::Serialize;

/// One reading of `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcSample {
    /// `VmHWM`: the peak resident set size so far, KiB.
    pub peak_rss_kib: u64,
    /// `VmRSS`: the resident set size now, KiB.
    pub rss_kib: u64,
    /// `Threads`.
    pub threads: u64,
    /// User plus system CPU time so far, seconds.
    pub cpu_seconds: f64,
}

impl ProcSample {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Reads the process `pid` now.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).with_context(|| format!("read {status_path}"))?;
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path).with_context(|| format!("read {stat_path}"))?;
    let (peak_rss_kib, rss_kib, threads) =
        parse_status(&status).with_context(|| format!("parse {status_path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parse {stat_path}"))?;
    Ok(ProcSample {
        peak_rss_kib,
        rss_kib,
        threads,
        cpu_seconds: ticks as f64 / clock_ticks_per_second(),
    })
}

/// `(VmHWM, VmRSS, Threads)` of a `/proc/PID/status` text.
fn parse_status(text: &str) -> Result<(u64, u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .with_context(|| format!("no {name} line"))?;
        let number = line
            .split_whitespace()
            .next()
            .with_context(|| format!("{name} has no value"))?;
        number
            .parse()
            .with_context(|| format!("{name} value {number:?}"))
    };
    Ok((field("VmHWM")?, field("VmRSS")?, field("Threads")?))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` text, in clock
/// ticks. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn cpu_ticks(text: &str) -> Result<u64> {
    let (_, rest) = text.rsplit_once(')').context("no ')' after the command")?;
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize, name: &str| -> Result<u64> {
        let text = fields.get(i).with_context(|| format!("no {name} field"))?;
        text.parse()
            .with_context(|| format!("{name} value {text:?}"))
    };
    Ok(get(11, "utime")? + get(12, "stime")?)
}

/// `getconf CLK_TCK`, 100 when it cannot be asked (Linux's value).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tevent-poller\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\n\
                    VmRSS:\t   40000 kB\nThreads:\t17\n";
        assert_eq!(parse_status(text).unwrap(), (51234, 40000, 17));
        assert!(parse_status("Name:\tx\n").is_err());
    }

    #[test]
    fn stat_times_after_a_command_with_spaces() {
        let text = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 75 0 0 20 0 17 0 123456 1000000 12000 18446744073709551615";
        assert_eq!(cpu_ticks(text).unwrap(), 325);
        assert!(cpu_ticks("4242 (x) S 1").is_err());
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.peak_rss_kib >= s.rss_kib / 2 && s.threads >= 1);
        assert!(s.cpu_seconds >= 0.0);
    }
}
