//! Wall-clock time for the job loop: windows, checkpoints and due times are
//! dates, and a test runs the loop on a clock that follows tokio's paused
//! timer instead of the system's.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
