//! Micro-benchmarks of the CPU-bound steps of one poll, on Keap-shaped input,
//! through the crate's public API. Run with `cargo bench --bench micro`.
//!
//! Groups, in the order a poll meets them:
//!
//! - `javadate`: parse one record date and format one instant with the two
//!   Java patterns Keap instances use, `yyyy-MM-dd'T'HH:mm:ssXXX` and
//!   `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`. Detection reads every record's dates
//!   with such a pattern (two per record when the resource has a created
//!   date), so parsing is a per-record cost; formatting is what every URL
//!   date costs. The input is what Keap sends, `2024-05-17T09:30:12.345+0000`:
//!   the `ssXXX` pattern takes its fraction and colon-less offset leniently.
//! - `template`: render the orders resource's URL
//!   (`/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'`)
//!   for one instant: once per poll, a baseline for the date formatter plus
//!   percent-encoding.
//! - `page`: one fetched page of 1,000 Keap orders (about 1.5 KB of JSON
//!   each, as `Box<RawValue>` like the fetch layer hands them over) against a
//!   job's starting checkpoint. `detect_and_events` is what a poll does with
//!   the page before publishing: detection (changes + next checkpoint) and
//!   one event record per change; `detect` is detection alone and
//!   `records_to_values` only the per-record `serde_json::Value` parse that
//!   detection starts with, to show how the total splits. Throughput is in
//!   records.
//!
//! `page` runs the crate's own `detect::detect` and `event::event_record`,
//! as the poll loop does; `records_to_values` is the whole-record
//! `serde_json::Value` parse detection did before it read only its fields.
//!
//! Times are kept short (1 s warm-up, 3 s measurement, 20 samples per
//! benchmark, flat sampling for the millisecond-long `page` iterations) so
//! that the whole run takes well under a minute; these are
//! for spotting regressions of an order of magnitude, not 2 %.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use event_poller::detect::{self, Bounds, Detected};
use event_poller::event::{EventContext, EventType, MAX_EVENT_BYTES, OutRecord, event_record};
use event_poller::instance::{Instance, Resource, parse_str};
use event_poller::javadate::{JavaDateFormat, Zone};
use event_poller::state::{Checkpoint, JobId};

/// The two date patterns of Keap instances.
const PATTERNS: [(&str, &str); 2] = [
    ("ssXXX", "yyyy-MM-dd'T'HH:mm:ssXXX"),
    ("ss.SSSXXX", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
];

/// A record date as Keap writes it.
const KEAP_DATE: &str = "2024-05-17T09:30:12.345+0000";

/// Records in one page: the largest `pageSize` Keap accepts.
const PAGE: usize = 1_000;

/// The instance of the poll loop's tests (`src/worker/poll.rs`): Keap
/// orders, id `id`, updated and created dates in the `ssXXX` pattern.
const INSTANCE: &str = r#"{"element":{"key":"infusionsoftecommerce"},"name":"shop",
  "configuration":{"event.notification.enabled":"true",
    "event.poller.refresh_interval_seconds":"60",
    "event.poller.configuration":{"orders":{
      "url":"/hubs/ecommerce/orders?where=since='${date:yyyy-MM-dd'T'HH:mm:ssXXX}'",
      "idField":"id",
      "datesConfiguration":{
        "updatedAtField":"modification_date","updatedAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX",
        "createdAtField":"creation_date","createdAtFormat":"yyyy-MM-dd'T'HH:mm:ssXXX"}}}}}"#;

/// The service's default window overlap (`SAFETY_OVERLAP_SECONDS`).
const OVERLAP: TimeDelta = TimeDelta::seconds(600);

fn instance() -> Instance {
    parse_str(Path::new("shop.json"), INSTANCE).expect("the benchmark's instance is valid")
}

/// When the benchmarked poll starts.
fn origin() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-17T12:00:00Z")
        .expect("a valid RFC 3339 date")
        .to_utc()
}

// ---------------------------------------------------------------- javadate

fn javadate(c: &mut Criterion) {
    let mut group = c.benchmark_group("javadate");
    let instant = origin() + TimeDelta::milliseconds(345);
    for (name, pattern) in PATTERNS {
        let format = JavaDateFormat::compile(pattern).expect("Keap's patterns compile");
        let parsed = format
            .parse(KEAP_DATE, &Zone::Utc)
            .expect("Keap's date parses");
        assert_eq!(parsed.timestamp_subsec_millis(), 345);
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| format.parse(black_box(KEAP_DATE), &Zone::Utc))
        });
        group.bench_function(format!("format/{name}"), |b| {
            b.iter(|| format.format(black_box(instant), &Zone::Utc))
        });
    }
    group.finish();
}

// ---------------------------------------------------------------- template

fn template(c: &mut Criterion) {
    let instance = instance();
    let resource = &instance.resources[0];
    let since = origin() - TimeDelta::minutes(11);
    assert_eq!(
        resource.url_after(since, &Zone::Utc),
        "/hubs/ecommerce/orders?where=since='2024-05-17T11:49:00Z'"
    );
    let mut group = c.benchmark_group("template");
    // `url_after` is the public way to render `Resource::url` (the template
    // type itself is crate-private); with `pollDelay` 0 it is the poll
    // loop's `url.render(start, zone)` plus one subtraction.
    group.bench_function("render/orders", |b| {
        b.iter(|| resource.url_after(black_box(since), &Zone::Utc))
    });
    group.finish();
}

// ---------------------------------------------------------------- page

/// Keap's record date format (`…T09:30:12.345+0000`).
fn keap_date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

const FIRST_NAMES: [&str; 8] = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James",
];
const LAST_NAMES: [&str; 8] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
];
const CITIES: [(&str, &str, &str); 4] = [
    ("Phoenix", "AZ", "850"),
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Portland", "OR", "972"),
];
/// (id, name, description, sku, price, cost, shippable)
type Product = (
    u64,
    &'static str,
    &'static str,
    &'static str,
    f64,
    f64,
    bool,
);
const CATALOG: [Product; 4] = [
    (
        103,
        "Branded Water Bottle",
        "750 ml stainless steel",
        "BOTTLE-750",
        24.95,
        8.2,
        true,
    ),
    (
        104,
        "Organic Coffee Beans 1 kg",
        "Medium roast, whole bean",
        "COFFEE-1KG",
        28.99,
        11.5,
        true,
    ),
    (
        106,
        "Monthly Membership",
        "Access to the member area",
        "MEMBER-M",
        29.0,
        0.0,
        false,
    ),
    (
        111,
        "Consultation Call",
        "30-minute call",
        "CALL-30",
        99.0,
        0.0,
        false,
    ),
];

/// One order shaped like Keap REST v1 (`crates/keap-sandbox/src/orders.rs`):
/// snake_case keys, money as numbers, nested contact, items and shipping.
/// Every fourth order is new (created when last modified: a CREATED event),
/// the others were created days before (UPDATED).
fn order(i: usize, modified: DateTime<Utc>) -> Value {
    let id = 10_000 + i as u64;
    let created = if i.is_multiple_of(4) {
        modified
    } else {
        modified - TimeDelta::days(1 + (i % 30) as i64)
    };
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / 3) % LAST_NAMES.len()];
    let (city, state, zip) = CITIES[i % CITIES.len()];
    let items: Vec<Value> = (0..2)
        .map(|k| {
            let (pid, name, description, sku, price, cost, shippable) =
                CATALOG[(i + k) % CATALOG.len()];
            json!({
                "id": id * 10 + k as u64,
                "name": name,
                "description": description,
                "type": "Product",
                "notes": "",
                "quantity": 1 + (i + k) % 3,
                "price": price,
                "cost": cost,
                "discount": 0.0,
                "product": {
                    "id": pid,
                    "name": name,
                    "description": description,
                    "sku": sku,
                    "shippable": shippable,
                    "taxable": shippable,
                },
            })
        })
        .collect();
    json!({
        "id": id,
        "title": "Online Sales Order",
        "status": if i.is_multiple_of(3) { "UNPAID" } else { "PAID" },
        "recurring": i.is_multiple_of(10),
        "total": 53.94,
        "total_paid": if i.is_multiple_of(3) { 0.0 } else { 53.94 },
        "total_due": if i.is_multiple_of(3) { 53.94 } else { 0.0 },
        "refund_total": 0.0,
        "allow_payment": true,
        "allow_paypal": false,
        "notes": "Leave the parcel at the back door, please.",
        "terms": "Payment due within 30 days.",
        "source_type": "ONLINE",
        "creation_date": keap_date(created),
        "modification_date": keap_date(modified),
        "order_date": keap_date(created),
        "lead_affiliate_id": 0,
        "sales_affiliate_id": 0,
        "contact": {
            "id": 5_000 + (i as u64 % 700),
            "email": format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), i),
            "first_name": first,
            "last_name": last,
            "company_name": "",
            "job_title": "",
        },
        "order_items": items,
        "shipping_information": {
            "id": id,
            "first_name": first,
            "middle_name": "",
            "last_name": last,
            "company": "",
            "phone": format!("555-01{:02}", i % 100),
            "street1": format!("{} Main St", 100 + i % 900),
            "street2": "",
            "city": city,
            "state": state,
            "zip": format!("{zip}{:02}", i % 100),
            "country": "United States",
            "invoice_to_company": false,
        },
    })
}

/// One page as the fetch layer hands it over: `PAGE` orders modified
/// half a second apart over the ten minutes since the job started.
fn page(job_start: DateTime<Utc>) -> Vec<Box<RawValue>> {
    (0..PAGE)
        .map(|i| {
            let modified = job_start + TimeDelta::milliseconds(500 * i as i64 + 7);
            let text = serde_json::to_string(&order(i, modified)).expect("JSON values serialise");
            RawValue::from_string(text).expect("serialised JSON is valid")
        })
        .collect()
}

/// The bounds of a job's first poll, as the poll loop computes them (no
/// resume, no measured skew, the provider's clock = ours).
fn first_window(checkpoint: &Checkpoint, resource: &Resource, now: DateTime<Utc>) -> Bounds {
    Bounds {
        start: detect::next_window_start(checkpoint, resource, OVERLAP),
        poll_start: now,
        overlap: OVERLAP,
        not_before: detect::job_start_on_provider_clock(checkpoint.started_from, None),
        provider_now: detect::provider_now(Some(now), now),
        skew: None,
    }
}

/// The poll loop after detection: one event record per change, those too
/// large for a Kafka message set aside (none in this benchmark's page).
fn events(ctx: &EventContext<'_>, detected: &Detected<'_>) -> Vec<OutRecord> {
    detected
        .changes
        .iter()
        .map(|c| event_record(ctx, c))
        .filter(|r| r.size() <= MAX_EVENT_BYTES)
        .collect()
}

fn page_benches(c: &mut Criterion) {
    let instance = instance();
    let resource = &instance.resources[0];
    let job = JobId::new(instance.id.as_str(), resource.name.as_str());
    let ctx = EventContext {
        job: &job,
        element_key: &instance.element_key,
        callback_url: instance.callback_url.as_deref(),
    };
    let now = origin();
    let checkpoint = Checkpoint::starting(job.clone(), now - TimeDelta::minutes(10));
    let window = first_window(&checkpoint, resource, now);
    let records = page(checkpoint.started_from);

    // The page is what the benchmark claims: ~1.5 KB orders, every one a
    // change, a quarter of them new.
    let bytes: usize = records.iter().map(|r| r.get().len()).sum();
    let mean = bytes / PAGE;
    assert!((1_300..=1_800).contains(&mean), "mean record size {mean} B");
    let detected = detect::detect(resource, &checkpoint, window, &records, None);
    assert!(detected.dead.is_empty());
    assert_eq!(detected.changes.len(), PAGE);
    let created = detected
        .changes
        .iter()
        .filter(|c| c.event_type == EventType::Created)
        .count();
    assert_eq!(created, PAGE / 4);
    assert_eq!(detected.next.seen.len(), PAGE);
    assert_eq!(events(&ctx, &detected).len(), PAGE);
    eprintln!("page: {PAGE} orders, {mean} B of JSON each on average");

    let mut group = c.benchmark_group("page");
    group.throughput(Throughput::Elements(PAGE as u64));
    // An iteration takes milliseconds: equal-sized samples keep the group
    // within its measurement time.
    group.sampling_mode(SamplingMode::Flat);
    // Each value dropped before the next is parsed, as detection does.
    group.bench_function("records_to_values", |b| {
        b.iter(|| {
            for r in black_box(&records) {
                black_box(serde_json::from_str::<Value>(r.get()).expect("valid JSON"));
            }
        })
    });
    group.bench_function("detect", |b| {
        b.iter(|| detect::detect(resource, &checkpoint, window, black_box(&records), None).next)
    });
    group.bench_function("detect_and_events", |b| {
        b.iter(|| {
            let detected = detect::detect(resource, &checkpoint, window, black_box(&records), None);
            (events(&ctx, &detected), detected.next)
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = micro;
    config = config();
    targets = javadate, template, page_benches
}
criterion_main!(micro);
