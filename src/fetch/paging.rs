//! Paging, pure: given the page just read (its URL, record count, `next`
//! link and headers), where the next page is, or that this was the last.
//! One [`Pager`] per window; no I/O, so every rule is unit-tested here.
//!
//! - Offset paging with `next` links (Keap REST v1): the last page is the
//!   first one shorter than the page size (Keap sends `next` even past the
//!   end); a link must stay on the API root's origin and must not point at
//!   the page itself.
//! - Keyset paging (elements whose offset pager has a `since` parameter,
//!   when the request names the record date): pages after the first are
//!   asked for as "since the newest date seen, skipping the records already
//!   seen at exactly that date". Offset paging shifts when data changes
//!   between requests: a record updated on page 1 moves to the end and the
//!   first record of page 2, *unchanged and possibly old*, is never served;
//!   a watermark moved past it loses it for good. Changed records only move
//!   to dates after the keyset bound, where they are read again and
//!   deduplicated.
//! - Cursor paging (Open Connectors): the next cursor comes in a response
//!   header and goes back as a query parameter; the last page is an empty
//!   one (the hub hands out a cursor even then); a repeated cursor is an
//!   error.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Url;
use reqwest::header::HeaderMap;

use super::FetchError;
use super::links::{label, query_param, resolve_next, set_query_param};
use crate::element::PagingKind;

/// What the window loop learned from one page.
#[derive(Debug)]
pub struct PageSeen<'a> {
    /// The page's URL.
    pub url: &'a Url,
    /// Records on the page.
    pub count: usize,
    /// The body's `next` link, if the paging kind has one and it is set.
    pub next_link: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// The paging state of one window.
#[derive(Debug)]
pub struct Pager<'a> {
    kind: &'a PagingKind,
    root: &'a Url,
    page_size: u32,
    /// `Some` when pages are asked for by keyset: the newest record date
    /// seen and how many records carry exactly that date.
    keyset: Option<Keyset<'a>>,
    /// Cursor paging: the last cursor handed out.
    last_cursor: Option<String>,
}

#[derive(Debug)]
struct Keyset<'a> {
    since_param: &'a str,
    offset_param: &'a str,
    /// The page request's own `since`: no record it serves may be older.
    since: Option<DateTime<Utc>>,
    bound: Option<(DateTime<Utc>, usize)>,
    /// Fingerprints of the records read at the bound's date.
    at_bound: HashSet<u64>,
    /// The first record dated before `since`: proof that the provider
    /// does not filter or sort as keyset paging needs.
    backwards: Option<DateTime<Utc>>,
    /// Set when this page was asked for inside a group of equal dates, one
    /// record before the first unread one: the date and the fingerprints
    /// read at it before. Unless a record changed or vanished in between,
    /// the page holds one of them again (see [`Pager::next`]).
    overlap: Option<(DateTime<Utc>, HashSet<u64>)>,
    /// Whether the page held a record at the overlap's date, and one of
    /// the fingerprints.
    overlap_seen: (bool, bool),
    /// Times a shifted group was read again from its start.
    restarts: u32,
}

/// How often one window reads a shifted group again from its start before
/// it fails (and is retried later): a group that changes at every request
/// is not worth hammering the provider for.
const MAX_GROUP_RESTARTS: u32 = 3;

fn fingerprint(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Keyset<'_> {
    /// The page after `page` (see [`Pager::next`]).
    fn next(
        &mut self,
        page: &PageSeen<'_>,
        full: bool,
        page_size: u32,
        paging_error: impl Fn(String) -> FetchError,
    ) -> Result<Option<Url>, FetchError> {
        if let (Some(t), Some(since)) = (self.backwards, self.since) {
            return Err(paging_error(format!(
                "a record dated {} came back for since={}: the provider does not filter and sort \
                 by ascending modification date as keyset paging needs (a conflicting order \
                 parameter in the URL?)",
                t.to_rfc3339(),
                since.to_rfc3339()
            )));
        }
        // Asked for inside a group, this page must hold a record read
        // before: if none, records before the offset changed or vanished,
        // the group shifted, and an unchanged record may have been
        // skipped. The group is read again from its start.
        if let Some((b, _)) = &self.overlap
            && self.overlap_seen == (true, false)
        {
            let b = *b;
            self.restarts += 1;
            if self.restarts > MAX_GROUP_RESTARTS {
                return Err(paging_error(format!(
                    "the records dated {} kept changing while they were paged through",
                    b.to_rfc3339()
                )));
            }
            tracing::info!(
                message = "Records of one date shifted between pages; reading them again.",
                date = %b.to_rfc3339(),
            );
            return Ok(Some(self.ask(page.url, b, 0, None)));
        }
        let Some((at, seen_at)) = self.bound.filter(|_| full) else {
            return Ok(None);
        };
        // The next page starts one record early (the dedupe set absorbs
        // it), so that a change among the records already read at the
        // boundary date, which shifts the rest forward, shows (see above).
        // A single record is simply read again; pages of one record cannot
        // overlap and skip by offset.
        let (offset, overlap) = match (page_size, seen_at) {
            (1, _) => (seen_at, None),
            (_, 0 | 1) => (0, None),
            _ => (seen_at - 1, Some((at, self.at_bound.clone()))),
        };
        let next = self.ask(page.url, at, offset, overlap);
        if next == *page.url {
            return Err(paging_error("keyset paging made no progress".into()));
        }
        Ok(Some(next))
    }

    /// The URL of the page `offset` records into date `at`, and the state
    /// that page is read with: the records before the offset are counted
    /// as seen (the first one again, when the page overlaps).
    fn ask(
        &mut self,
        from: &Url,
        at: DateTime<Utc>,
        offset: usize,
        overlap: Option<(DateTime<Utc>, HashSet<u64>)>,
    ) -> Url {
        let mut next = from.clone();
        set_query_param(
            &mut next,
            self.since_param,
            &at.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        set_query_param(&mut next, self.offset_param, &offset.to_string());
        self.since = Some(at);
        self.bound = Some((at, offset));
        self.overlap = overlap;
        self.overlap_seen = (false, false);
        next
    }
}

impl<'a> Pager<'a> {
    /// The pager of a window that starts at `first` (already carrying its
    /// page size). `by_keyset` asks for keyset paging, which only an offset
    /// pager with a `since` parameter can do; a resumed window's URL
    /// carries the keyset position it stopped at.
    pub fn new(
        kind: &'a PagingKind,
        root: &'a Url,
        page_size: u32,
        by_keyset: bool,
        first: &Url,
    ) -> Self {
        let keyset = match kind {
            PagingKind::OffsetNext {
                since_param: Some(since_param),
                offset_param,
                ..
            } if by_keyset => {
                let bound = query_param(first, since_param)
                    .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
                    .map(|t| {
                        let seen = query_param(first, offset_param)
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        (t.with_timezone(&Utc), seen)
                    });
                Some(Keyset {
                    since_param,
                    offset_param,
                    since: bound.map(|(t, _)| t),
                    bound,
                    at_bound: HashSet::new(),
                    backwards: None,
                    overlap: None,
                    overlap_seen: (false, false),
                    restarts: 0,
                })
            }
            _ => None,
        };
        Self {
            kind,
            root,
            page_size,
            keyset,
            last_cursor: None,
        }
    }

    /// Whether record dates are needed ([`Pager::record_date`] per record).
    pub fn wants_dates(&self) -> bool {
        self.keyset.is_some()
    }

    /// The body field holding the next link, for the page parser.
    pub fn next_field(&self) -> Option<&'a str> {
        match self.kind {
            PagingKind::OffsetNext { next_field, .. } => Some(next_field),
            PagingKind::CursorHeader { .. } => None,
        }
    }

    /// One record of the page: its date (`None`: unreadable, it does not
    /// move the bound) and its text.
    pub fn record(&mut self, date: Option<DateTime<Utc>>, text: &str) {
        let (Some(keyset), Some(t)) = (self.keyset.as_mut(), date) else {
            return;
        };
        if keyset.since.is_some_and(|since| t < since) && keyset.backwards.is_none() {
            keyset.backwards = Some(t);
        }
        let print = fingerprint(text);
        if let Some((b, seen)) = &keyset.overlap
            && *b == t
        {
            keyset.overlap_seen.0 = true;
            keyset.overlap_seen.1 |= seen.contains(&print);
        }
        keyset.bound = match keyset.bound {
            Some((b, n)) if t == b => {
                keyset.at_bound.insert(print);
                Some((b, n + 1))
            }
            Some((b, n)) if t < b => Some((b, n)),
            _ => {
                keyset.at_bound = HashSet::from([print]);
                Some((t, 1))
            }
        };
    }

    /// The next page after `page`, or `None` when `page` was the last.
    ///
    /// # Errors
    /// A link to another origin or to the page itself, a repeated cursor,
    /// or keyset paging that would ask for the same page again.
    pub fn next(&mut self, page: &PageSeen<'_>) -> Result<Option<Url>, FetchError> {
        let full = page.count >= self.page_size as usize;
        let paging_error = |message: String| FetchError::Paging {
            request: label("GET", page.url),
            message,
        };
        if let Some(keyset) = &mut self.keyset {
            return keyset.next(page, full, self.page_size, paging_error);
        }
        match self.kind {
            PagingKind::OffsetNext { .. } => match page.next_link {
                Some(link) if full => {
                    let next = resolve_next(self.root, page.url, link)?;
                    if next == *page.url {
                        return Err(paging_error("the next link points at the same page".into()));
                    }
                    Ok(Some(next))
                }
                _ => Ok(None),
            },
            PagingKind::CursorHeader { header, param, .. } => {
                let cursor = page
                    .headers
                    .get(header.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|c| !c.is_empty());
                match cursor {
                    Some(cursor) if page.count > 0 => {
                        if self.last_cursor.as_deref() == Some(cursor) {
                            return Err(paging_error(format!(
                                "the hub repeated the same `{header}`"
                            )));
                        }
                        self.last_cursor = Some(cursor.to_owned());
                        let mut next = page.url.clone();
                        set_query_param(&mut next, param, cursor);
                        Ok(Some(next))
                    }
                    _ => Ok(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::element::{ConnectionMode, element};

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn keap() -> PagingKind {
        element("infusionsoftecommerce", ConnectionMode::Direct)
            .unwrap()
            .paging
    }

    fn hub() -> PagingKind {
        element("infusionsoftecommerce", ConnectionMode::Hub)
            .unwrap()
            .paging
    }

    fn seen<'a>(
        url: &'a Url,
        count: usize,
        next: Option<&'a str>,
        h: &'a HeaderMap,
    ) -> PageSeen<'a> {
        PageSeen {
            url,
            count,
            next_link: next,
            headers: h,
        }
    }

    #[test]
    fn offset_links_are_followed_until_a_short_page() {
        let kind = keap();
        let root = url("http://h/crm/rest");
        let first = url("http://h/crm/rest/v1/orders?limit=2");
        let mut pager = Pager::new(&kind, &root, 2, false, &first);
        assert!(!pager.wants_dates());
        assert_eq!(pager.next_field(), Some("next"));
        let h = HeaderMap::new();
        let next = pager
            .next(&seen(
                &first,
                2,
                Some("/crm/rest/v1/orders?limit=2&offset=2"),
                &h,
            ))
            .unwrap()
            .unwrap();
        assert_eq!(
            next.as_str(),
            "http://h/crm/rest/v1/orders?limit=2&offset=2"
        );
        // Keap sends `next` on the last page too: the short page ends it.
        let end = pager.next(&seen(&next, 1, Some("/crm/rest/v1/orders?offset=4"), &h));
        assert_eq!(end.unwrap(), None);
        // A full page without a link is the last one as well.
        assert_eq!(pager.next(&seen(&first, 2, None, &h)).unwrap(), None);
    }

    #[test]
    fn offset_links_to_the_same_page_or_elsewhere_are_refused() {
        let kind = keap();
        let root = url("http://h/crm/rest");
        let page = url("http://h/crm/rest/v1/orders?limit=2&offset=2");
        let mut pager = Pager::new(&kind, &root, 2, false, &page);
        let h = HeaderMap::new();
        let same = pager.next(&seen(&page, 2, Some(page.as_str()), &h));
        assert!(matches!(same, Err(FetchError::Paging { .. })), "{same:?}");
        let away = pager.next(&seen(&page, 2, Some("http://evil.test/x"), &h));
        assert!(
            matches!(away, Err(FetchError::CrossOrigin { .. })),
            "{away:?}"
        );
    }

    #[test]
    fn keyset_asks_for_the_newest_date_and_the_records_seen_at_it() {
        let kind = keap();
        let root = url("http://h/crm/rest");
        let first = url("http://h/crm/rest/v1/orders?since=2024-01-01T00%3A00%3A00Z&limit=3");
        let mut pager = Pager::new(&kind, &root, 3, true, &first);
        assert!(pager.wants_dates());
        for (id, date) in [
            (1, "2024-01-01T00:00:05Z"),
            (2, "2024-01-01T00:00:07Z"),
            (3, "2024-01-01T00:00:07Z"),
        ] {
            pager.record(Some(t(date)), &format!("{{\"id\":{id}}}"));
        }
        let h = HeaderMap::new();
        let next = pager.next(&seen(&first, 3, None, &h)).unwrap().unwrap();
        assert_eq!(
            query_param(&next, "since").as_deref(),
            Some("2024-01-01T00:00:07.000Z")
        );
        // Two records share the boundary date: the next page starts one
        // record early.
        assert_eq!(query_param(&next, "offset").as_deref(), Some("1"));
        // A short page is the last one.
        assert_eq!(pager.next(&seen(&next, 2, None, &h)).unwrap(), None);
        // A record older than the page's since: the order is not the one
        // keyset paging needs, and the window fails.
        let mut backwards = Pager::new(&kind, &root, 3, true, &next);
        backwards.record(Some(t("2024-01-01T00:00:06Z")), "{}");
        let err = backwards.next(&seen(&next, 1, None, &h));
        assert!(matches!(err, Err(FetchError::Paging { .. })), "{err:?}");
    }

    /// Pages through a group of equal dates larger than a page: each page
    /// starts one record early, and a page that holds none of the group's
    /// records read so far means the group shifted: it is read again from
    /// its start.
    #[test]
    fn keyset_inside_a_group_overlaps_by_one_and_notices_a_shift() {
        let kind = keap();
        let root = url("http://h/crm/rest");
        let at = "2024-01-01T00:00:07Z";
        let first = url("http://h/crm/rest/v1/orders?since=2024-01-01T00%3A00%3A00Z&limit=2");
        let rec = |id: u32| format!("{{\"id\":{id}}}");
        let h = HeaderMap::new();
        let mut pager = Pager::new(&kind, &root, 2, true, &first);
        pager.record(Some(t(at)), &rec(1));
        pager.record(Some(t(at)), &rec(2));
        let p2 = pager.next(&seen(&first, 2, None, &h)).unwrap().unwrap();
        assert_eq!(
            query_param(&p2, "offset").as_deref(),
            Some("1"),
            "one early"
        );
        // No shift: the page repeats record 2, then brings 3.
        pager.record(Some(t(at)), &rec(2));
        pager.record(Some(t(at)), &rec(3));
        let p3 = pager.next(&seen(&p2, 2, None, &h)).unwrap().unwrap();
        assert_eq!(query_param(&p3, "offset").as_deref(), Some("2"));
        // Records 1 and 2 changed meanwhile: offset 2 now holds 5 and 6,
        // none read before; 4 would have been skipped.
        pager.record(Some(t(at)), &rec(5));
        pager.record(Some(t(at)), &rec(6));
        let again = pager.next(&seen(&p3, 2, None, &h)).unwrap().unwrap();
        assert_eq!(query_param(&again, "offset").as_deref(), Some("0"));
        assert_eq!(
            query_param(&again, "since").as_deref(),
            Some("2024-01-01T00:00:07.000Z")
        );
        // A group that shifts at every page fails the window in the end.
        let mut churn = Pager::new(&kind, &root, 2, true, &first);
        let mut url_now = first.clone();
        let mut id = 100;
        let mut failed = false;
        for _ in 0..20 {
            churn.record(Some(t(at)), &rec(id));
            churn.record(Some(t(at)), &rec(id + 1));
            id += 2;
            match churn.next(&seen(&url_now, 2, None, &h)) {
                Ok(Some(next)) => url_now = next,
                Ok(None) => break,
                Err(FetchError::Paging { message, .. }) => {
                    assert!(message.contains("kept changing"), "{message}");
                    failed = true;
                    break;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(failed, "a churning group fails the window");
    }

    #[test]
    fn keyset_that_would_repeat_the_page_is_an_error() {
        let kind = keap();
        let root = url("http://h/crm/rest");
        // As a previous keyset step wrote it: since and offset last.
        let page =
            url("http://h/crm/rest/v1/orders?limit=1&since=2024-01-01T00%3A00%3A07.000Z&offset=1");
        let mut pager = Pager::new(&kind, &root, 1, true, &page);
        // Nothing readable on the page: the bound stays where the URL put it.
        pager.record(None, "{}");
        let h = HeaderMap::new();
        let err = pager.next(&seen(&page, 1, None, &h));
        assert!(matches!(err, Err(FetchError::Paging { .. })), "{err:?}");
    }

    #[test]
    fn cursors_come_from_the_header_until_an_empty_page() {
        let kind = hub();
        let root = url("http://h/elements/api-v2");
        let first = url("http://h/elements/api-v2/hubs/ecommerce/orders?pageSize=2");
        let mut pager = Pager::new(&kind, &root, 2, true, &first);
        assert!(!pager.wants_dates(), "the hub has no since parameter");
        assert_eq!(pager.next_field(), None);
        let mut h = HeaderMap::new();
        h.insert(
            "elements-next-page-token",
            HeaderValue::from_static("abc+/="),
        );
        let next = pager.next(&seen(&first, 2, None, &h)).unwrap().unwrap();
        assert_eq!(query_param(&next, "nextPage").as_deref(), Some("abc+/="));
        // The same cursor again is a loop.
        let again = pager.next(&seen(&next, 2, None, &h));
        assert!(matches!(again, Err(FetchError::Paging { .. })), "{again:?}");
        // An empty page ends the window whatever the header says.
        let mut fresh = Pager::new(&kind, &root, 2, false, &first);
        assert_eq!(fresh.next(&seen(&first, 0, None, &h)).unwrap(), None);
        // So does a page without a cursor.
        assert_eq!(
            fresh
                .next(&seen(&first, 2, None, &HeaderMap::new()))
                .unwrap(),
            None
        );
    }
}
