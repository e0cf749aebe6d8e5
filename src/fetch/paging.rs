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
    bound: Option<(DateTime<Utc>, usize)>,
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
                    bound,
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

    /// One record's date (`None`: unreadable, it does not move the bound).
    pub fn record_date(&mut self, date: Option<DateTime<Utc>>) {
        let (Some(keyset), Some(t)) = (self.keyset.as_mut(), date) else {
            return;
        };
        keyset.bound = match keyset.bound {
            Some((b, n)) if t == b => Some((b, n + 1)),
            Some((b, n)) if t < b => Some((b, n)),
            _ => Some((t, 1)),
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
        if let Some(keyset) = &self.keyset {
            let Some((at, seen_at)) = keyset.bound.filter(|_| full) else {
                return Ok(None);
            };
            let mut next = page.url.clone();
            set_query_param(
                &mut next,
                keyset.since_param,
                &at.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
            set_query_param(&mut next, keyset.offset_param, &seen_at.to_string());
            if next == *page.url {
                return Err(paging_error("keyset paging made no progress".into()));
            }
            return Ok(Some(next));
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
        // The resumed position is read from the URL: the since alone here.
        for date in [
            "2024-01-01T00:00:05Z",
            "2024-01-01T00:00:07Z",
            "2024-01-01T00:00:07Z",
        ] {
            pager.record_date(Some(t(date)));
        }
        let h = HeaderMap::new();
        let next = pager.next(&seen(&first, 3, None, &h)).unwrap().unwrap();
        assert_eq!(
            query_param(&next, "since").as_deref(),
            Some("2024-01-01T00:00:07.000Z")
        );
        assert_eq!(query_param(&next, "offset").as_deref(), Some("2"));
        // An older or unreadable date does not move the bound.
        let mut resumed = Pager::new(&kind, &root, 3, true, &next);
        resumed.record_date(Some(t("2024-01-01T00:00:07Z")));
        resumed.record_date(Some(t("2024-01-01T00:00:06Z")));
        resumed.record_date(None);
        let after = resumed.next(&seen(&next, 3, None, &h)).unwrap().unwrap();
        assert_eq!(query_param(&after, "offset").as_deref(), Some("3"));
        // A short page is the last one.
        assert_eq!(resumed.next(&seen(&next, 2, None, &h)).unwrap(), None);
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
        pager.record_date(None);
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
