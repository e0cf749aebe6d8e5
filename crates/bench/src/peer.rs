//! The peer comparison: the same workloads run by castorm/kafka-connect-http
//! v0.8.11, a Kafka Connect source polling HTTP APIs. It needs a local
//! checkout of that project (`PEER_CASTORM_SRC`) and a Connect runtime; this
//! driver does not run it, and says so.

use serde::{Deserialize, Serialize};

/// The environment variable naming the peer's checkout.
pub const SOURCE_VAR: &str = "PEER_CASTORM_SRC";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    pub ran: bool,
    pub message: String,
}

/// Why there are no peer figures in this run.
pub fn status() -> PeerStatus {
    let message = match std::env::var_os(SOURCE_VAR) {
        None => format!(
            "Peer run skipped: no local checkout of castorm/kafka-connect-http v0.8.11 was given ({SOURCE_VAR} is unset)."
        ),
        Some(path) => format!(
            "Peer run skipped: {SOURCE_VAR} is {}, but this driver does not run the peer; no peer figures.",
            std::path::Path::new(&path).display()
        ),
    };
    PeerStatus {
        ran: false,
        message,
    }
}
