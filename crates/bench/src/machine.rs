//! What the figures were measured on: cores, CPU, memory, kernel,
//! toolchain, broker version and the commit under test. Every item is
//! best effort: what cannot be read is reported as unknown.

use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: Option<f64>,
    pub kernel: String,
    pub rustc: String,
    pub kafka: String,
    pub commit: String,
    /// The work tree had uncommitted changes.
    pub dirty: bool,
    pub date: String,
}

const UNKNOWN: &str = "unknown";

pub fn describe() -> Machine {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu_model = read("/proc/cpuinfo")
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| UNKNOWN.into());
    let memory_gib = read("/proc/meminfo").and_then(|t| mem_total_gib(&t));
    let kernel = read("/proc/sys/kernel/osrelease")
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| UNKNOWN.into());
    let rustc = output("rustc", &["--version"]).unwrap_or_else(|| UNKNOWN.into());
    let kafka = read("deploy/kafka/pom.xml")
        .and_then(|t| kafka_version(&t))
        .unwrap_or_else(|| UNKNOWN.into());
    let commit = output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| UNKNOWN.into());
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Machine {
        cores,
        cpu_model,
        memory_gib,
        kernel,
        rustc,
        kafka,
        commit,
        dirty,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Trimmed stdout of a successful command.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn mem_total_gib(meminfo: &str) -> Option<f64> {
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// `<kafka.version>` of the local broker's Maven description.
fn kafka_version(pom: &str) -> Option<String> {
    let start = pom.find("<kafka.version>")? + "<kafka.version>".len();
    let len = pom[start..].find("</kafka.version>")?;
    Some(pom[start..start + len].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_kafka_version() {
        let gib = mem_total_gib("MemTotal:       24683584 kB\nMemFree: 1 kB\n").unwrap();
        assert!((gib - 23.54).abs() < 0.01);
        assert_eq!(
            kafka_version("<p><kafka.version>4.1.2</kafka.version></p>").as_deref(),
            Some("4.1.2")
        );
        assert_eq!(kafka_version("<p/>"), None);
    }
}
