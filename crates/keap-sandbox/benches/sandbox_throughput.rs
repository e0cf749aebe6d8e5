//! How many orders per second of page data `keap-sandbox` serves on one
//! core, next to a trivial server returning a same-sized static body.
//!
//! Run: `cargo bench --bench sandbox_throughput`
//!
//! Setup: 50,000 pre-created orders; the sandbox runs on a current-thread
//! Tokio runtime in its own OS thread (one core); the client runs in another
//! thread and walks every page of 1000 orders (`limit=1000&offset=…`) with
//! keep-alive, reading each body completely, for at least `MEASURE`. The
//! baseline is the same client fetching a pre-serialized page of the same
//! size from a bare axum handler on the same kind of runtime, so the ratio
//! shows what the sandbox's own work (filtering, paging, assembling JSON)
//! costs compared to moving the bytes at all.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use keap_sandbox::{SandboxConfig, serve};
use tokio::sync::oneshot;

const ORDERS: usize = 50_000;
const PAGE: usize = 1_000;
const MEASURE: Duration = Duration::from_secs(4);
const TARGET_ORDERS_PER_SECOND: f64 = 20_000.0;

/// A server on a current-thread runtime in its own OS thread; returns its
/// address and a handle that stops it.
fn spawn_server<F, Fut>(run: F) -> (SocketAddr, oneshot::Sender<()>, std::thread::JoinHandle<()>)
where
    F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            run(listener, stop_rx).await;
        });
    });
    let addr = addr_rx.recv().expect("server address");
    (addr, stop_tx, thread)
}

/// Fetches `urls` round-robin on a client thread for at least `MEASURE`;
/// returns (pages, bytes, elapsed).
fn drive(urls: Vec<String>) -> (usize, usize, Duration) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async move {
            let client = reqwest::Client::new();
            // Warm up: connection, allocator, caches.
            for url in urls.iter().take(5) {
                client
                    .get(url)
                    .send()
                    .await
                    .expect("warm-up")
                    .bytes()
                    .await
                    .expect("body");
            }
            let (mut pages, mut bytes) = (0usize, 0usize);
            let start = Instant::now();
            while start.elapsed() < MEASURE {
                for url in &urls {
                    let resp = client.get(url).send().await.expect("request");
                    assert!(resp.status().is_success(), "{url}: {}", resp.status());
                    bytes += resp.bytes().await.expect("body").len();
                    pages += 1;
                }
            }
            (pages, bytes, start.elapsed())
        })
    })
    .join()
    .expect("client thread")
}

fn main() {
    // The sandbox under test.
    let built = Instant::now();
    let (addr, stop, server) = spawn_server(|listener, stop| async move {
        let config = SandboxConfig {
            seed: 1,
            orders: ORDERS,
            ..Default::default()
        };
        serve(listener, config, async move {
            let _ = stop.await;
        })
        .await
        .expect("sandbox serves");
    });
    let base = format!("http://{addr}/crm/rest/v1/orders?limit={PAGE}");
    let urls: Vec<String> = (0..ORDERS / PAGE)
        .map(|p| format!("{base}&offset={}", p * PAGE))
        .collect();

    // Check the pages really hold PAGE orders, and keep one as the baseline
    // body (the first request also waits for the 50,000 orders to exist).
    let sample: Bytes = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let body = reqwest::get(&urls[0])
                    .await
                    .expect("first page")
                    .bytes()
                    .await
                    .expect("body");
                let doc: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
                assert_eq!(doc["orders"].as_array().map(Vec::len), Some(PAGE));
                assert_eq!(doc["count"].as_u64(), Some(ORDERS as u64));
                body
            })
        })
        .join()
        .expect("sample thread")
    });
    let ready = built.elapsed();

    let (pages, bytes, elapsed) = drive(urls);
    let _ = stop.send(());
    server.join().expect("sandbox thread");
    let sandbox_rate = (pages * PAGE) as f64 / elapsed.as_secs_f64();

    // Baseline: the same bytes from a handler that does nothing else.
    let body = sample.clone();
    let (addr, stop, server) = spawn_server(move |listener, stop| async move {
        let app = Router::new().route(
            "/static",
            get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await
            .expect("baseline serves");
    });
    let static_urls = vec![format!("http://{addr}/static"); ORDERS / PAGE];
    let (base_pages, _, base_elapsed) = drive(static_urls);
    let _ = stop.send(());
    server.join().expect("baseline thread");
    let baseline_rate = (base_pages * PAGE) as f64 / base_elapsed.as_secs_f64();

    let ratio = sandbox_rate / baseline_rate;
    let mb_per_s = bytes as f64 / elapsed.as_secs_f64() / 1e6;
    println!(
        "setup: {ORDERS} orders pre-created and first page served in {:.2} s; page body {} bytes",
        ready.as_secs_f64(),
        sample.len()
    );
    println!(
        "sandbox:  {pages} pages of {PAGE} in {:.2} s = {sandbox_rate:.0} orders/s ({mb_per_s:.0} MB/s), 1 server thread",
        elapsed.as_secs_f64()
    );
    println!(
        "baseline: {base_pages} static pages of the same size in {:.2} s = {baseline_rate:.0} orders/s",
        base_elapsed.as_secs_f64()
    );
    let verdict = if sandbox_rate >= TARGET_ORDERS_PER_SECOND {
        "PASS"
    } else {
        "FAIL"
    };
    println!(
        "sandbox_throughput: {sandbox_rate:.0} orders/s, baseline {baseline_rate:.0} orders/s, ratio {ratio:.2}; target >= {TARGET_ORDERS_PER_SECOND:.0} orders/s: {verdict}"
    );
    if verdict == "FAIL" {
        std::process::exit(1);
    }
}
