//! The `validate` command: check instance files without polling anything, and
//! optionally show the URL each resource would call.
//!
//! Output is line-oriented so that it can be grepped and diffed in CI:
//!
//! ```text
//! instances/bad.json: $.configuration["event.poller.configuration"].orders.idField: missing: …
//! instances/seed.json orders /hubs/ecommerce/orders?where=since='2024-01-02T03:04:05Z'
//! ```
//!
//! Problems come first, then URL lines. Both are ordered by file path (a
//! stable sort, so a file's problems keep document order and its resources
//! keep configuration order); the same arguments always print the same text.

use std::io::{self, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::instance::load_paths;
use crate::javadate::Zone;

/// Validates every instance file in `files` (each a file or a directory, as
/// [`crate::instance::load_paths`] reads them, so ids must be unique across
/// all of them) and prints one `FILE: JSON_PATH: REASON` line per problem.
///
/// With `at`, also prints `FILE RESOURCE URL` for every resource of every
/// valid instance, disabled ones included: `at` is taken as the last poll
/// time, so the URL is rendered at `at` minus the resource's `pollDelay`,
/// exactly as the poller would call it; `service_zone` is the zone of
/// `${date:…}`.
///
/// Returns true when there is no problem.
///
/// # Errors
/// Resource URLs that ask for another order than the one keyset paging
/// relies on (the fetch would refuse them at every poll).
fn sort_conflicts(
    instances: &[crate::instance::Instance],
    zone: &Zone,
) -> Vec<crate::instance::ConfigProblem> {
    let mut out = Vec::new();
    for instance in instances {
        let Some(element) =
            crate::element::element(&instance.element_key, instance.connection.mode())
        else {
            continue;
        };
        for resource in &instance.resources {
            let url = resource.url.render(DateTime::<Utc>::UNIX_EPOCH, zone);
            if let Some((name, value, want)) = element.paging.conflicting_sort(&url) {
                out.push(crate::instance::ConfigProblem {
                    file: instance.source.clone(),
                    json_path: format!(
                        "$.configuration[\"event.poller.configuration\"].{}.url",
                        resource.name
                    ),
                    reason: format!(
                        "{name}={value} conflicts with the order change detection reads pages in: \
                         it needs {name}={want} (ascending modification date), or records are skipped"
                    ),
                });
            }
        }
    }
    out
}

/// Only errors writing to `out`.
pub fn run(
    files: &[PathBuf],
    at: Option<DateTime<Utc>>,
    service_zone: &Zone,
    out: &mut impl Write,
) -> io::Result<bool> {
    let mut loaded = load_paths(files);
    loaded
        .problems
        .extend(sort_conflicts(&loaded.instances, service_zone));
    loaded.problems.sort_by(|a, b| a.file.cmp(&b.file));
    loaded.instances.sort_by(|a, b| a.source.cmp(&b.source));

    for problem in &loaded.problems {
        writeln!(out, "{problem}")?;
    }
    if let Some(at) = at {
        for instance in &loaded.instances {
            for resource in &instance.resources {
                writeln!(
                    out,
                    "{} {} {}",
                    instance.source.display(),
                    resource.name,
                    resource.url_after(at, service_zone)
                )?;
            }
        }
    }
    Ok(loaded.problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/instances")
    }

    fn validate(files: &[PathBuf], at: Option<DateTime<Utc>>, zone: &Zone) -> (bool, String) {
        let mut out = Vec::new();
        let ok = run(files, at, zone, &mut out).unwrap();
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn valid_files_print_nothing_without_a_time() {
        let (ok, out) = validate(&[fixtures()], None, &Zone::Utc);
        assert!(ok);
        assert_eq!(out, "");
    }

    #[test]
    fn valid_files_print_rendered_urls_at_a_time() {
        let at = Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap();
        let zone = Zone::parse("Asia/Kolkata").unwrap();
        // Arguments out of order: the output is still ordered by file.
        let files = [
            fixtures().join("seed.json"),
            fixtures().join("documented-spelling.json"),
        ];
        let (ok, out) = validate(&files, Some(at), &zone);
        assert!(ok, "{out}");
        let documented = fixtures().join("documented-spelling.json");
        let seed = fixtures().join("seed.json");
        let expected = format!(
            "{d} orders /crm/rest/v1/orders?since=2024-07-01T11:59:00Z&order=updated\n\
             {d} transactions /crm/rest/v1/transactions?since=2024-07-01%2008:00:00\n\
             {s} orders /hubs/ecommerce/orders?where=since='2024-07-01T17:30:00%2B05:30'\n",
            d = documented.display(),
            s = seed.display(),
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn problems_are_printed_one_per_line_and_fail() {
        let broken = fixtures().join("broken");
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let (ok, out) = validate(&[fixtures(), broken.clone()], Some(at), &Zone::Utc);
        assert!(!ok);
        let lines: Vec<&str> = out.lines().collect();
        let problem_lines: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(&broken.display().to_string()))
            .collect();
        // Every broken file is reported, and nothing else is a problem.
        assert!(problem_lines.len() >= 19, "{out}");
        assert!(problem_lines.iter().all(|l| l.contains(": $")), "{out}");
        // URL lines for the valid files follow the problems.
        let url_lines = &lines[problem_lines.len()..];
        assert_eq!(url_lines.len(), 3, "{out}");
        assert!(
            url_lines[2].ends_with("since='2024-01-01T00:00:00Z'"),
            "{out}"
        );
        let mut sorted = problem_lines.clone();
        sorted.sort_by_key(|l| l.split(": ").next().unwrap_or_default().to_owned());
        assert_eq!(sorted, problem_lines);
        assert!(out.contains(&format!(
            "{}: $.configuration[\"event.poller.configuration\"].orders.idField: missing",
            broken.join("missing-id-field.json").display()
        )));
    }

    #[test]
    fn a_missing_path_is_a_problem() {
        let (ok, out) = validate(&[fixtures().join("nope.json")], None, &Zone::Utc);
        assert!(!ok);
        assert!(out.contains("nope.json: $: cannot read"), "{out}");
    }
}
