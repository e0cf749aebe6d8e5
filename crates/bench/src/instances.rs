//! Instance files: one Keap shop (the sandbox) per file, OAuth with the
//! sandbox's client and a one-time authorization code each.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::sandbox::{CLIENT_ID, CLIENT_SECRET};

/// The knobs the benchmarks turn.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub interval_seconds: u64,
    /// `pageSize` of the orders resource (the element's default if `None`).
    pub page_size: Option<u32>,
    /// `event.poller.backfill.from` (RFC 3339).
    pub backfill_from: Option<String>,
    /// Dates with milliseconds (`keap-sandbox --timestamp-millis`).
    pub millis: bool,
}

/// The instance `name` polling the sandbox at `base` with `code`.
pub fn instance(name: &str, base: &str, code: &str, shape: &Shape) -> Value {
    // Keap writes `2019-10-25T18:53:10.000+0000`; `ssXXX` reads it (a
    // fraction is optional after `ss`), `ss.SSSZ` keeps its milliseconds.
    let date_format = if shape.millis {
        "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
    } else {
        "yyyy-MM-dd'T'HH:mm:ssXXX"
    };
    let mut orders = json!({
        "url": "/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}' ",
        "idField": "id",
        "datesConfiguration": {
            "updatedAtField": "modification_date",
            "updatedAtFormat": date_format,
            "createdAtField": "creation_date",
            "createdAtFormat": date_format
        }
    });
    if let Some(size) = shape.page_size {
        orders["pageSize"] = json!(size);
    }
    let mut configuration = json!({
        "base.url": format!("{base}/crm/rest"),
        "oauth.callback.url": "https://example.test/callback",
        "oauth.api.key": CLIENT_ID,
        "oauth.api.secret": CLIENT_SECRET,
        "event.notification.enabled": "true",
        "event.notification.callback.url": "https://example.test/events",
        "event.poller.refresh_interval_seconds": shape.interval_seconds.to_string(),
        "event.poller.configuration": { "orders": orders }
    });
    if let Some(from) = &shape.backfill_from {
        configuration["event.poller.backfill.from"] = json!(from);
    }
    json!({
        "element": {"key": "infusionsoftecommerce"},
        "providerData": {"code": code},
        "configuration": configuration,
        "name": name
    })
}

/// Writes `<name>.json` for each `(name, document)` into `dir`.
pub fn write(dir: &Path, docs: &[(String, Value)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for (name, doc) in docs {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, doc.to_string())
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_reaches_the_document() {
        let shape = Shape {
            interval_seconds: 5,
            page_size: Some(1000),
            backfill_from: Some("2024-01-01T00:00:00Z".into()),
            millis: true,
        };
        let v = instance("bench", "http://127.0.0.1:1", "c-1", &shape);
        let cfg = &v["configuration"];
        assert_eq!(cfg["base.url"], "http://127.0.0.1:1/crm/rest");
        assert_eq!(cfg["event.poller.refresh_interval_seconds"], "5");
        assert_eq!(cfg["event.poller.backfill.from"], "2024-01-01T00:00:00Z");
        let orders = &cfg["event.poller.configuration"]["orders"];
        assert_eq!(orders["pageSize"], 1000);
        assert_eq!(
            orders["datesConfiguration"]["updatedAtFormat"],
            "yyyy-MM-dd'T'HH:mm:ss.SSSZ"
        );
        assert_eq!(v["providerData"]["code"], "c-1");
        let plain = instance("b", "http://h", "c", &Shape::default());
        assert!(plain["configuration"]["event.poller.backfill.from"].is_null());
        assert!(
            plain["configuration"]["event.poller.configuration"]["orders"]["pageSize"].is_null()
        );
    }
}
