//! Keap REST v1 `GET /crm/rest/v1/orders`.
//!
//! Parameters (all optional): `since`, `until` (dates), `limit` (default and
//! maximum 1000; larger values are capped rather than refused), `offset`,
//! `paid` (`true`/`false`), `contact_id`, `product_id`, `order`
//! (`modification_date` (default), `id`, `creation_date`, `order_date`),
//! `order_direction` (`ASCENDING` (default) / `DESCENDING`), and the legacy
//! `access_token`. Unknown parameters are ignored. Dates may come as
//! `2017-01-01T22:17:59.039Z` (Keap's documented example), with `+00:00` or
//! `+0000`, or without fraction; Keap reportedly answers 400 to some of the
//! fraction-less forms, the sandbox is lenient there.
//!
//! `since`/`until` filter on `modification_date`, the half-open window
//! `since <= modification_date < until`. Keap documents them only as "date
//! to start/search to"; the poller uses them to find changed orders, so they
//! must select on the modification date, and an inclusive `since` re-serves
//! orders that share the watermark's second instead of losing them.
//!
//! Response: `{"orders": [...], "count": total, "next": url, "previous": url}`
//! where `count` is the number of matching orders (not the page size), and
//! `next`/`previous` are always present absolute URLs on the origin the
//! client used, shaped like Keap's links (`/orders/?limit=…&offset=…`, with
//! a trailing slash; both paths are served).
//! `next` is given even past the end; clients stop on a short or empty page.
//! Offset paging is re-evaluated per request, so records shift when data
//! changes between pages (see [`super::store::Store::list`]).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Sandbox;
use super::clock::parse_client_date;
use super::faults::{keap_error, keap_throttled, lock, page_response, shape_records};
use super::oauth::{bearer_token, unauthorized};
use super::respond::{ParamError, origin, push_array, push_json_string};
use super::store::{Cmp, DateField, Filter, ListQuery, SortKey};

/// Keap's page size: the default and the cap.
pub const MAX_LIMIT: usize = 1000;

/// The path Keap's `next`/`previous` links use (note the trailing slash).
const LINK_PATH: &str = "/crm/rest/v1/orders/";

/// What a query value may keep unencoded: RFC 3986 unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Parameters echoed into `next`/`previous`, in this order.
const ECHOED: &[&str] = &[
    "since",
    "until",
    "paid",
    "contact_id",
    "product_id",
    "order",
    "order_direction",
];

/// A parsed request: the store query plus what the links must repeat.
#[derive(Debug)]
pub struct KeapParams {
    pub query: ListQuery,
    echo: Vec<(&'static str, String)>,
}

/// Parses Keap's query parameters.
///
/// # Errors
/// The first parameter that is present but unusable.
pub fn parse(pairs: &[(String, String)]) -> Result<KeapParams, ParamError> {
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let mut q = ListQuery {
        limit: MAX_LIMIT,
        ..Default::default()
    };
    if let Some(v) = get("limit") {
        let n: usize = v
            .parse()
            .map_err(|_| ParamError::new("limit", format!("'{v}' is not a positive integer")))?;
        if n == 0 {
            return Err(ParamError::new("limit", "must be at least 1"));
        }
        q.limit = n.min(MAX_LIMIT);
    }
    if let Some(v) = get("offset") {
        q.offset = v.parse().map_err(|_| {
            ParamError::new("offset", format!("'{v}' is not a non-negative integer"))
        })?;
    }
    if let Some(v) = get("since") {
        let t = parse_client_date(v).map_err(|e| ParamError::new("since", e))?;
        q.filters
            .push(Filter::Date(DateField::Modification, Cmp::Ge, t));
    }
    if let Some(v) = get("until") {
        let t = parse_client_date(v).map_err(|e| ParamError::new("until", e))?;
        q.filters
            .push(Filter::Date(DateField::Modification, Cmp::Lt, t));
    }
    if let Some(v) = get("paid") {
        let paid = match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ParamError::new(
                    "paid",
                    format!("'{v}' is not true or false"),
                ));
            }
        };
        q.filters.push(Filter::Paid(paid));
    }
    for (name, make) in [
        ("contact_id", Filter::ContactId as fn(u64) -> Filter),
        ("product_id", Filter::ProductId),
    ] {
        if let Some(v) = get(name) {
            let id = v
                .parse()
                .map_err(|_| ParamError::new(name, format!("'{v}' is not an id")))?;
            q.filters.push(make(id));
        }
    }
    if let Some(v) = get("order") {
        q.sort = match v.to_ascii_lowercase().as_str() {
            "modification_date" | "last_updated" | "date_updated" => SortKey::ModificationDate,
            "id" => SortKey::Id,
            "creation_date" | "date_created" => SortKey::CreationDate,
            "order_date" => SortKey::OrderDate,
            _ => {
                return Err(ParamError::new(
                    "order",
                    format!("'{v}' is not one of modification_date, id, creation_date, order_date"),
                ));
            }
        };
    }
    if let Some(v) = get("order_direction") {
        q.descending = match v.to_ascii_uppercase().as_str() {
            "ASCENDING" | "ASC" => false,
            "DESCENDING" | "DESC" => true,
            _ => {
                return Err(ParamError::new(
                    "order_direction",
                    format!("'{v}' is not ASCENDING or DESCENDING"),
                ));
            }
        };
    }
    let echo = ECHOED
        .iter()
        .filter_map(|name| get(name).map(|v| (*name, v.to_owned())))
        .collect();
    Ok(KeapParams { query: q, echo })
}

impl KeapParams {
    fn link(&self, origin: &str, offset: usize) -> String {
        let mut url = format!(
            "{origin}{LINK_PATH}?limit={}&offset={offset}",
            self.query.limit
        );
        for (name, value) in &self.echo {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        url
    }
}

/// The whole page document, written straight from pre-serialized records.
pub fn body(records: &[Bytes], count: usize, next: &str, previous: &str) -> Vec<u8> {
    let size: usize = records.iter().map(Bytes::len).sum::<usize>()
        + records.len()
        + next.len()
        + previous.len()
        + 64;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"orders\":");
    push_array(&mut out, records);
    out.extend_from_slice(b",\"count\":");
    out.extend_from_slice(count.to_string().as_bytes());
    out.extend_from_slice(b",\"next\":");
    push_json_string(&mut out, next);
    out.extend_from_slice(b",\"previous\":");
    push_json_string(&mut out, previous);
    out.push(b'}');
    out
}

/// `GET /crm/rest/v1/orders`: authentication, faults, then the page.
pub async fn list_orders(
    State(sb): State<Sandbox>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let shared = &sb.0;
    let plan = shared.faults.plan();
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return ParamError::new("query", e.body_text()).into_response(),
    };
    let now = shared.clock.now();
    let query_token = pairs
        .iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.as_str());
    let (auth, client) = {
        let mut tokens = lock(&shared.tokens);
        (
            tokens.check(bearer_token(&headers, query_token), now),
            tokens.client_id().to_owned(),
        )
    };
    if let Err(why) = auth {
        return unauthorized(why);
    }
    let quota = shared.quota.count(now, plan.throttle);
    if plan.throttle {
        return keap_throttled(&plan, now, quota, &client);
    }
    if plan.error {
        return keap_error(&plan, quota);
    }
    let params = match parse(&pairs) {
        Ok(p) => p,
        Err(e) => return e.respond(quota),
    };
    let page = lock(&shared.store).list(&params.query);
    let records = shape_records(&plan, &page.orders);
    let origin = origin(&headers, shared.local_addr);
    let q = &params.query;
    let next = params.link(&origin, q.offset.saturating_add(q.limit));
    let previous = params.link(&origin, q.offset.saturating_sub(q.limit));
    page_response(&plan, quota, body(&records, page.total, &next, &previous))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_caps() {
        let p = parse(&[]).unwrap();
        assert_eq!((p.query.limit, p.query.offset), (1000, 0));
        let p = parse(&pairs(&[("limit", "5000")])).unwrap();
        assert_eq!(p.query.limit, 1000);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (k, v) in [
            ("limit", "ten"),
            ("limit", "0"),
            ("offset", "-1"),
            ("since", "yesterday"),
            ("until", "2020-13-01"),
            ("paid", "yes"),
            ("contact_id", "abc"),
            ("order", "title"),
            ("order_direction", "UP"),
        ] {
            assert_eq!(parse(&pairs(&[(k, v)])).unwrap_err().parameter, k);
        }
    }

    #[test]
    fn links_repeat_filters_and_move_the_offset() {
        let p = parse(&pairs(&[
            ("since", "2020-01-01T00:00:00.000+0000"),
            ("limit", "10"),
            ("offset", "20"),
        ]))
        .unwrap();
        assert_eq!(
            p.link("http://h:1", 30),
            "http://h:1/crm/rest/v1/orders/?limit=10&offset=30&since=2020-01-01T00%3A00%3A00.000%2B0000"
        );
    }

    #[test]
    fn body_is_valid_json() {
        let records = [
            Bytes::from_static(b"{\"id\":1}"),
            Bytes::from_static(b"{\"id\":2}"),
        ];
        let v: serde_json::Value =
            serde_json::from_slice(&body(&records, 7, "http://n", "http://p")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"orders":[{"id":1},{"id":2}],"count":7,"next":"http://n","previous":"http://p"})
        );
    }
}
