//! Agreement with Java: `tests/java/JavaDates.java` formats and parses the
//! cases of `tests/fixtures/javadate-cases.tsv` and
//! `tests/fixtures/javadate-parse-cases.tsv` with `DateTimeFormatter`, in one
//! JVM launch, and we must print exactly what Java prints and read the same
//! instants (or differ only where the parse fixture says so, and how).
//!
//! Java 17 is part of this project's toolchain, so a missing `java` fails
//! the test instead of skipping it.
//!
//! This binary also checks that formatting allocates only its output and
//! parsing nothing: that needs a counting global allocator, which only an
//! integration test binary of its own can install.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use event_poller::javadate::{JavaDateFormat, Zone};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Non-blank, non-comment lines split on tabs.
fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Java's results keyed by ("F" or "P", case number).
fn run_java() -> HashMap<(String, usize), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("java")
        .current_dir(root)
        .arg("tests/java/JavaDates.java")
        .arg(fixture("javadate-cases.tsv"))
        .arg(fixture("javadate-parse-cases.tsv"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs Java 17 or later: could not run `java` ({e}). \
                 Install a JDK and put `java` on PATH."
            )
        });
    assert!(
        output.status.success(),
        "java tests/java/JavaDates.java failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("Java prints UTF-8");
    stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '\t');
            let kind = parts.next().unwrap_or_default().to_owned();
            let n = parts
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected Java output line {line:?}"));
            ((kind, n), parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

fn zone(id: &str) -> Zone {
    Zone::parse(id).unwrap_or_else(|e| panic!("fixture zone: {e}"))
}

fn compile(pattern: &str) -> JavaDateFormat {
    JavaDateFormat::compile(pattern).unwrap_or_else(|e| panic!("fixture pattern: {e}"))
}

#[test]
fn we_format_and_parse_like_java() {
    let java = run_java();
    let mut failures = Vec::new();

    // Format: the cross product, in the order JavaDates.java walks it.
    let (mut patterns, mut instants, mut zones) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows(&fixture("javadate-cases.tsv")) {
        match (row[0].as_str(), row.get(1)) {
            ("pattern", Some(p)) => patterns.push(p.clone()),
            ("instant", Some(i)) => instants.push(i.clone()),
            ("zone", Some(z)) => zones.push(z.clone()),
            _ => panic!("bad format fixture line {row:?}"),
        }
    }
    assert!(patterns.len() >= 40, "{} patterns", patterns.len());
    let mut n = 0;
    for pattern in &patterns {
        let format = compile(pattern);
        for instant in &instants {
            let at: DateTime<Utc> = instant.parse().expect("fixture instant");
            for zone_id in &zones {
                let ours = format.format(at, &zone(zone_id));
                let theirs = java.get(&("F".to_owned(), n));
                if theirs != Some(&ours) {
                    failures.push(format!(
                        "format {pattern:?} at {instant} in {zone_id}: Java {theirs:?}, we {ours:?}"
                    ));
                }
                n += 1;
            }
        }
    }
    let formatted = n;

    // Parse: same instant, or both refuse; or the documented difference.
    let parse_rows = rows(&fixture("javadate-parse-cases.tsv"));
    for (n, row) in parse_rows.iter().enumerate() {
        let [pattern, text, zone_id, expectation, ..] = row.as_slice() else {
            panic!("bad parse fixture line {row:?}");
        };
        let ours = compile(pattern)
            .parse(text, &zone(zone_id))
            .map(|dt| format!("{}\t{}", dt.timestamp(), dt.timestamp_subsec_nanos()));
        let theirs = java.get(&("P".to_owned(), n)).cloned().unwrap_or_default();
        let java_ok = !theirs.starts_with("!ERROR");
        let agrees = match expectation.as_str() {
            "same" if java_ok => ours.as_ref().ok() == Some(&theirs),
            "same" => ours.is_err(),
            "lenient" => !java_ok && ours.is_ok(),
            "stricter" => java_ok && ours.is_err(),
            other => panic!("unknown expectation {other:?}"),
        };
        if !agrees {
            failures.push(format!(
                "parse {pattern:?} {text:?} in {zone_id} ({expectation}): Java {theirs:?}, we {ours:?}"
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Java:\n{}",
        failures.len(),
        formatted + parse_rows.len(),
        failures.join("\n")
    );
    assert_eq!(
        java.len(),
        formatted + parse_rows.len(),
        "Java printed a different number of cases"
    );
}

/// The system allocator, counting the allocations of the current thread so
/// that tests running in parallel do not disturb each other's counts.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn format_allocates_only_its_output_and_parse_nothing() {
    let cases = [
        (
            "yyyy-MM-dd'T'HH:mm:ssXXX",
            "America/New_York",
            "2019-10-25T18:53:10.000+0000",
        ),
        (
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "UTC",
            "2019-10-25T18:53:10.123Z",
        ),
        (
            "yyyy-MM-dd HH:mm:ss",
            "America/New_York",
            "2024-11-03 01:30:00",
        ),
        (
            "yyyy-MM-dd HH:mm:ss",
            "Australia/Lord_Howe",
            "2150-01-03 01:30:00",
        ),
        (
            "EEE, dd MMM yyyy HH:mm:ss Z",
            "+05:30",
            "fri, 05 JAN 2024 10:00:00 +0000",
        ),
        (
            "EEEE, MMMM d, yyyy h:mm:ss.SSSSSSSSS a xx",
            "Asia/Kathmandu",
            "Friday, January 5, 2024 7:03:09.123456789 PM +0545",
        ),
        ("yyyyMMddHHmmssSSS", "-03:30", "20241103050000123"),
    ];
    let instant: DateTime<Utc> = "2024-02-29T12:34:56.789Z".parse().expect("valid instant");
    for (pattern, zone_id, text) in cases {
        let format = compile(pattern);
        let zone = zone(zone_id);
        assert!(format.parse(text, &zone).is_ok(), "{pattern:?} on {text:?}");
        let formatting = allocations_during(|| {
            black_box(format.format(black_box(instant), &zone));
        });
        assert_eq!(formatting, 1, "format {pattern:?} in {zone_id}");
        let parsing = allocations_during(|| {
            let _ = black_box(format.parse(black_box(text), &zone));
        });
        assert_eq!(parsing, 0, "parse {pattern:?} on {text:?}");
    }
    // the counter does see allocations: an error message is one
    let failing = allocations_during(|| {
        let _ = black_box(compile("yyyy").parse(black_box("garbage"), &Zone::Utc));
    });
    assert!(failing > 0);
}
