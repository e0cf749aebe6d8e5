//! The worker's `/metrics`: scraped, parsed (Prometheus text 0.0.4), summed
//! over label sets, and histograms read as quantiles.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// Metric names, as the worker's README documents them.
pub const POLLS: &str = "event_poller_polls_total";
pub const EVENTS: &str = "event_poller_events_total";
pub const TRANSACTIONS: &str = "event_poller_transactions_total";
pub const HTTP_RESPONSES: &str = "event_poller_http_responses_total";
pub const THROTTLE_WAITS: &str = "event_poller_throttle_waits_total";
pub const SCHEDULE_LATENESS: &str = "event_poller_schedule_lateness_seconds";

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

/// `GET http://ADDR/metrics`, parsed: the families named in `families`
/// only (`_bucket`, `_count` and `_sum` included), or all when empty. With
/// thousands of jobs a scrape is megabytes, and parsing it all would take
/// CPU from the worker being measured.
pub async fn scrape(http: &reqwest::Client, addr: &str, families: &[&str]) -> Result<Scrape> {
    let url = format!("http://{addr}/metrics");
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("GET {url}: body"))?;
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    Scrape::parse_families(&text, families).with_context(|| format!("parse {url}"))
}

impl Scrape {
    /// Parses the text format; comments and blank lines are skipped.
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_families(text, &[])
    }

    /// Parses the samples of `families` only (all when empty).
    pub fn parse_families(text: &str, families: &[&str]) -> Result<Self> {
        let wanted = |line: &str| {
            let name = line.split(['{', ' ', '\t']).next().unwrap_or_default();
            families.is_empty()
                || families.iter().any(|f| {
                    name.strip_prefix(f)
                        .is_some_and(|rest| matches!(rest, "" | "_bucket" | "_count" | "_sum"))
                })
        };
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && wanted(l))
            .map(|l| parse_line(l).with_context(|| format!("sample line {l:?}")))
            .collect::<Result<_>>()?;
        Ok(Self { samples })
    }

    /// The sum of `name` over every label set whose labels include all of
    /// `filter`; 0 when there is none.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    /// Label sets of `name` (matching `filter`) whose value is at least `min`.
    pub fn count_at_least(&self, name: &str, filter: &[(&str, &str)], min: f64) -> usize {
        self.matching(name, filter)
            .filter(|s| s.value >= min)
            .count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// Histogram `name` (its `_bucket` samples summed per `le` over label
    /// sets, and its `_count`).
    pub fn histogram(&self, name: &str) -> Result<Histogram> {
        let bucket_name = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket_name) {
            let le_text = s
                .labels
                .get("le")
                .with_context(|| format!("{bucket_name} without le"))?;
            let le = parse_value(le_text).with_context(|| format!("le {le_text:?}"))?;
            // Order buckets by bound; total_cmp keys keep +Inf last.
            let key = ordered_key(le);
            by_le.entry(key).or_insert((le, 0.0)).1 += s.value;
        }
        Ok(Histogram {
            buckets: by_le.into_values().collect(),
            count: self.sum(&format!("{name}_count"), &[]),
        })
    }
}

/// Maps a non-negative float or +Inf to an integer with the same order.
fn ordered_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if v.is_sign_negative() {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn parse_value(text: &str) -> Result<f64> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t.parse().with_context(|| format!("number {t:?}")),
    }
}

fn parse_line(line: &str) -> Result<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once([' ', '\t']).context("no value")?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value_text = rest.split_whitespace().next().context("no value")?;
    Ok(Sample {
        name: name.trim().to_owned(),
        labels,
        value: parse_value(value_text)?,
    })
}

/// Reads `k="v",…}` and returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, after) = text.split_once('=').context("label without '='")?;
        let after = after.strip_prefix('"').context("label value not quoted")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("label value ends in '\\'"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("label value not closed"),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        text = &after[end + 1..];
    }
}

/// A cumulative histogram: `(upper bound, observations ≤ bound)` in bound
/// order, the last bound +Inf.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
}

impl Histogram {
    /// What was observed after `earlier` (same buckets): the difference
    /// of two scrapes of a counter-like histogram.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| b.to_bits() == le.to_bits())
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, (c - before(*le)).max(0.0)))
                .collect(),
            count: (self.count - earlier.count).max(0.0),
        }
    }

    fn total(&self) -> f64 {
        self.buckets.last().map_or(self.count, |(_, c)| *c)
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does (the first bucket starts at 0).
    /// A quantile in the +Inf bucket is the highest finite bound. `None`
    /// without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (le, cumulative) in &self.buckets {
            if *cumulative >= rank && *cumulative > below {
                if le.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below) / (cumulative - below);
                return Some(lower + (le - lower) * within);
            }
            lower = *le;
            below = *cumulative;
        }
        Some(lower)
    }

    /// The upper bound of the highest bucket that holds an observation:
    /// the maximum is at most this (+Inf when the top bucket has one).
    pub fn max_bound(&self) -> Option<f64> {
        let mut below = 0.0;
        let mut max = None;
        for (le, cumulative) in &self.buckets {
            if *cumulative > below {
                max = Some(*le);
            }
            below = *cumulative;
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP event_poller_polls_total Polls by outcome.
# TYPE event_poller_polls_total counter
event_poller_polls_total{job="shop-0/orders",outcome="committed"} 3
event_poller_polls_total{job="shop-1/orders",outcome="committed"} 0
event_poller_polls_total{job="shop-1/orders",outcome="fetch_failed"} 2
event_poller_transactions_total{result="committed"} 7
event_poller_ready 1
odd{a="x,y=\"z\"",b="}"} 1.5e3
event_poller_schedule_lateness_seconds_bucket{le="0.001"} 50
event_poller_schedule_lateness_seconds_bucket{le="0.01"} 90
event_poller_schedule_lateness_seconds_bucket{le="1"} 99
event_poller_schedule_lateness_seconds_bucket{le="10"} 100
event_poller_schedule_lateness_seconds_bucket{le="+Inf"} 100
event_poller_schedule_lateness_seconds_sum 12.5
event_poller_schedule_lateness_seconds_count 100
"#;

    #[test]
    fn sums_and_filters() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.sum(POLLS, &[]), 5.0);
        assert_eq!(s.sum(POLLS, &[("outcome", "committed")]), 3.0);
        assert_eq!(s.count_at_least(POLLS, &[("outcome", "committed")], 1.0), 1);
        assert_eq!(s.sum("event_poller_ready", &[]), 1.0);
        assert_eq!(s.sum("missing", &[]), 0.0);
        let odd = s.samples.iter().find(|x| x.name == "odd").unwrap();
        assert_eq!(odd.labels["a"], "x,y=\"z\"");
        assert_eq!(odd.labels["b"], "}");
        assert_eq!(odd.value, 1500.0);
    }

    #[test]
    fn only_the_asked_families() {
        let s = Scrape::parse_families(TEXT, &[POLLS, SCHEDULE_LATENESS]).unwrap();
        assert_eq!(s.sum(POLLS, &[]), 5.0);
        assert_eq!(s.sum(TRANSACTIONS, &[]), 0.0);
        assert_eq!(s.histogram(SCHEDULE_LATENESS).unwrap().count, 100.0);
        assert!(s.samples.iter().all(|x| x.name != "odd"));
    }

    #[test]
    fn histogram_quantiles_interpolate_inside_buckets() {
        let h = Scrape::parse(TEXT)
            .unwrap()
            .histogram(SCHEDULE_LATENESS)
            .unwrap();
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 5);
        assert!(h.buckets.last().unwrap().0.is_infinite());
        // p50: rank 50, all in the first bucket [0, 0.001].
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // p70: rank 70, 20 of 40 into (0.001, 0.01].
        assert!((h.quantile(0.7).unwrap() - 0.0055).abs() < 1e-12);
        // p99: rank 99, the last of (0.01, 1].
        assert!((h.quantile(0.99).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(h.max_bound(), Some(10.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn deltas_of_two_scrapes() {
        let before = Scrape::parse(TEXT)
            .unwrap()
            .histogram(SCHEDULE_LATENESS)
            .unwrap();
        let later = TEXT
            .replace("le=\"0.001\"} 50", "le=\"0.001\"} 150")
            .replace("le=\"0.01\"} 90", "le=\"0.01\"} 190")
            .replace("le=\"1\"} 99", "le=\"1\"} 199")
            .replace("le=\"10\"} 100", "le=\"10\"} 200")
            .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 200")
            .replace("seconds_count 100", "seconds_count 200");
        let after = Scrape::parse(&later)
            .unwrap()
            .histogram(SCHEDULE_LATENESS)
            .unwrap();
        let d = after.since(&before);
        assert_eq!(d.count, 100.0);
        assert_eq!(d.buckets[0], (0.001, 100.0));
        assert_eq!(d.max_bound(), Some(0.001));
        assert!((d.quantile(0.99).unwrap() - 0.00099).abs() < 1e-12);
    }

    #[test]
    fn top_bucket_quantile_is_the_highest_finite_bound() {
        let h = Histogram {
            buckets: vec![(1.0, 1.0), (f64::INFINITY, 4.0)],
            count: 4.0,
        };
        assert_eq!(h.quantile(0.99), Some(1.0));
        assert_eq!(h.max_bound(), Some(f64::INFINITY));
    }
}
