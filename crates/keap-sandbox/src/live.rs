//! The live generator: creates and updates orders at fixed average rates,
//! like a busy store, until shutdown.
//!
//! It ticks every 10 ms and performs however many operations are due by
//! then (`rate × elapsed − done`), so the rates hold on average even when a
//! tick is late, and each tick's batch runs in one critical section of the
//! store: the change log stays exact however fast it runs.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Sandbox;
use super::faults::lock;

/// Short enough that rates of a few per second look continuous, long enough
/// to cost nothing when idle.
const TICK: Duration = Duration::from_millis(10);

/// A cap per tick so a stalled process does not hold the store lock for a
/// huge catch-up batch.
const MAX_PER_TICK: u64 = 5_000;

/// Runs until `cancel` fires. Does nothing if both rates are zero.
pub async fn run(sb: Sandbox, create_rate: f64, update_rate: f64, cancel: CancellationToken) {
    if create_rate <= 0.0 && update_rate <= 0.0 {
        return;
    }
    let start = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut created, mut updated) = (0u64, 0u64);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Float to integer: rates and elapsed are finite and non-negative.
        let due = |rate: f64, done: u64| {
            ((rate.max(0.0) * elapsed) as u64)
                .saturating_sub(done)
                .min(MAX_PER_TICK)
        };
        let (creates, updates) = (due(create_rate, created), due(update_rate, updated));
        if creates == 0 && updates == 0 {
            continue;
        }
        let mut store = lock(&sb.0.store);
        // Interleave so that updates can hit orders created in this tick.
        let (mut c, mut u) = (0, 0);
        while c < creates || u < updates {
            if c < creates {
                store.create(1, None);
                c += 1;
            }
            if u < updates {
                store.touch_random();
                u += 1;
            }
        }
        drop(store);
        created += creates;
        updated += updates;
    }
}
