//! The Open Connectors hub form of the same orders:
//! `GET /elements/api-v2/hubs/ecommerce/orders`.
//!
//! - Auth: `Authorization: User <U>, Organization <O>, Element <E>` with U
//!   and O from `--hub-user`/`--hub-organization` and any non-empty element
//!   token E; anything else is 401. Without `--hub-user` the hub is open.
//! - `where`: CEQL conditions joined by `and`: `since='<date>'` (orders
//!   modified at or after the date, the form Open Connectors' poller uses),
//!   `until='<date>'` (modified before), comparisons `= != < <= > >=` on
//!   `modification_date`, `creation_date`, `order_date` (quoted dates) and
//!   `id` (numbers), `contact_id = n`, `paid = true|false`.
//! - `pageSize`: default 200, at most 1000.
//! - Cursor paging: a non-empty page carries an `elements-next-page-token`
//!   header, passed back as `nextPage`. The token is given even when the
//!   next page turns out empty; clients stop on an empty page (which has no
//!   token). The sandbox models the hub as translating its cursor into the
//!   vendor's offset paging (Keap v1 has no cursors), so the token is an
//!   opaque offset and records can shift under concurrent changes exactly
//!   like Keap's own offsets: the harder case for a poller.
//! - Body: a bare JSON array of the vendor's order records, as Open
//!   Connectors returns for hub resources of this element.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use super::Sandbox;
use super::clock::parse_client_date;
use super::faults::{hub_error, hub_message, hub_throttled, lock, page_response, shape_records};
use super::respond::{ParamError, push_array};
use super::store::{Cmp, DateField, Filter, ListQuery};

pub const DEFAULT_PAGE_SIZE: usize = 200;
pub const MAX_PAGE_SIZE: usize = 1000;

/// The response header carrying the cursor.
pub const NEXT_PAGE_HEADER: &str = "elements-next-page-token";

/// Encodes an offset as an opaque cursor.
pub fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{offset}"))
}

/// Decodes a cursor from `nextPage`.
///
/// # Errors
/// When the token was not made by [`encode_cursor`].
pub fn decode_cursor(token: &str) -> Result<usize, ParamError> {
    let bad = || ParamError::new("nextPage", "not a page token returned by this hub");
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    text.strip_prefix("v1:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// Whether `Authorization` names the configured user and organization and
/// some element.
pub fn hub_authorized(headers: &HeaderMap, user: &str, organization: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (mut u, mut o, mut e) = (None, None, None);
    for part in value.split(',') {
        let Some((key, secret)) = part.trim().split_once(' ') else {
            return false;
        };
        let secret = secret.trim();
        match key {
            "User" => u = Some(secret),
            "Organization" => o = Some(secret),
            "Element" => e = Some(secret),
            _ => return false,
        }
    }
    u == Some(user) && o == Some(organization) && e.is_some_and(|e| !e.is_empty())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Op(Cmp),
    Str(String),
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some((_, '\'')) if chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    Some((_, '\'')) => break,
                    Some((_, ch)) => s.push(ch),
                    None => return Err(format!("unterminated string starting at {i}")),
                }
            }
            out.push(Token::Str(s));
        } else if "=<>!".contains(c) {
            let mut op = String::new();
            while let Some(&(_, ch)) = chars.peek() {
                if "=<>!".contains(ch) {
                    op.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            let cmp = match op.as_str() {
                "=" => Cmp::Eq,
                "!=" | "<>" => Cmp::Ne,
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                _ => return Err(format!("unknown operator '{op}' at {i}")),
            };
            out.push(Token::Op(cmp));
        } else if c.is_alphanumeric() || "_.-+:".contains(c) {
            let mut word = String::new();
            while let Some(&(_, ch)) = chars.peek() {
                if ch.is_alphanumeric() || "_.-+:".contains(ch) {
                    word.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            if word.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
                && !word.eq_ignore_ascii_case("true")
                && !word.eq_ignore_ascii_case("false")
            {
                out.push(Token::Ident(word));
            } else {
                out.push(Token::Word(word));
            }
        } else {
            return Err(format!("unexpected '{c}' at {i}"));
        }
    }
    Ok(out)
}

/// Parses a CEQL `where` into store filters.
///
/// # Errors
/// A [`ParamError`] for `where` saying what is wrong (syntax, unknown field,
/// operator not allowed for the field, value not a date/number).
pub fn parse_where(text: &str) -> Result<Vec<Filter>, ParamError> {
    let err = |m: String| ParamError::new("where", m);
    let tokens = tokenize(text).map_err(err)?;
    let mut filters = Vec::new();
    let mut i = 0;
    loop {
        let (field, cmp, value) = match tokens.get(i..i + 3) {
            Some([Token::Ident(f), Token::Op(c), v]) => (f.as_str(), *c, v),
            _ => {
                return Err(err(format!(
                    "expected \"<field> <operator> <value>\" at condition {}",
                    filters.len() + 1
                )));
            }
        };
        filters.push(condition(field, cmp, value).map_err(err)?);
        i += 3;
        match tokens.get(i) {
            None => break,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("and") => i += 1,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("or") => {
                return Err(err("only 'and' is supported between conditions".into()));
            }
            Some(_) => {
                return Err(err(format!(
                    "expected 'and' after condition {}",
                    filters.len()
                )));
            }
        }
    }
    Ok(filters)
}

fn condition(field: &str, cmp: Cmp, value: &Token) -> Result<Filter, String> {
    let date = |v: &Token| match v {
        Token::Str(s) => parse_client_date(s).map_err(|e| format!("{field}: {e}")),
        _ => Err(format!(
            "{field} needs a quoted date, e.g. '2019-10-25T18:53:10Z'"
        )),
    };
    let number = |v: &Token| {
        let text = match v {
            Token::Str(s) | Token::Word(s) => s.as_str(),
            _ => "",
        };
        text.parse::<u64>()
            .map_err(|_| format!("{field} needs a number"))
    };
    let only_eq = || {
        if cmp == Cmp::Eq {
            Ok(())
        } else {
            Err(format!("{field} supports only '='"))
        }
    };
    Ok(match field {
        "since" => {
            only_eq()?;
            Filter::Date(DateField::Modification, Cmp::Ge, date(value)?)
        }
        "until" => {
            only_eq()?;
            Filter::Date(DateField::Modification, Cmp::Lt, date(value)?)
        }
        "modification_date" => Filter::Date(DateField::Modification, cmp, date(value)?),
        "creation_date" => Filter::Date(DateField::Creation, cmp, date(value)?),
        "order_date" => Filter::Date(DateField::Order, cmp, date(value)?),
        "id" => Filter::Id(cmp, number(value)?),
        "contact_id" | "contact.id" => {
            only_eq()?;
            Filter::ContactId(number(value)?)
        }
        "paid" => {
            only_eq()?;
            let text = match value {
                Token::Str(s) | Token::Word(s) => s.to_ascii_lowercase(),
                Token::Ident(s) => s.to_ascii_lowercase(),
                Token::Op(_) => String::new(),
            };
            match text.as_str() {
                "true" => Filter::Paid(true),
                "false" => Filter::Paid(false),
                _ => return Err("paid needs true or false".into()),
            }
        }
        other => {
            return Err(format!(
                "unknown field '{other}'; use since, until, modification_date, creation_date, \
                 order_date, id, contact_id or paid"
            ));
        }
    })
}

/// A parsed hub request.
#[derive(Debug)]
pub struct HubParams {
    pub query: ListQuery,
}

/// Parses `where`, `pageSize` and `nextPage`.
///
/// # Errors
/// The first unusable parameter.
pub fn parse(pairs: &[(String, String)]) -> Result<HubParams, ParamError> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut query = ListQuery {
        limit: DEFAULT_PAGE_SIZE,
        ..Default::default()
    };
    if let Some(w) = get("where").filter(|w| !w.trim().is_empty()) {
        query.filters = parse_where(w)?;
    }
    if let Some(v) = get("pageSize") {
        let n: usize = v
            .trim()
            .parse()
            .map_err(|_| ParamError::new("pageSize", format!("'{v}' is not a positive integer")))?;
        if !(1..=MAX_PAGE_SIZE).contains(&n) {
            return Err(ParamError::new(
                "pageSize",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        query.limit = n;
    }
    if let Some(token) = get("nextPage").filter(|t| !t.trim().is_empty()) {
        query.offset = decode_cursor(token)?;
    }
    Ok(HubParams { query })
}

/// `GET /elements/api-v2/hubs/ecommerce/orders`.
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
    if let Some((user, org)) = &shared.hub
        && !hub_authorized(&headers, user, org)
    {
        return hub_message(
            StatusCode::UNAUTHORIZED,
            HeaderMap::new(),
            "Invalid Organization or User secret, or invalid Element token provided. \
             Expected 'Authorization: User <secret>, Organization <secret>, Element <token>'.",
        );
    }
    if plan.throttle {
        return hub_throttled(&plan, shared.clock.now());
    }
    if plan.error {
        return hub_error(&plan);
    }
    let params = match query {
        Ok(Query(pairs)) => parse(&pairs),
        Err(e) => Err(ParamError::new("query", e.body_text())),
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            return hub_message(
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                &format!("Invalid parameter '{}': {}", e.parameter, e.message),
            )
            .into_response();
        }
    };
    let page = lock(&shared.store).list(&params.query);
    let records: Vec<Bytes> = shape_records(&plan, &page.orders);
    let mut headers = HeaderMap::new();
    if !page.orders.is_empty() {
        let next = encode_cursor(params.query.offset + page.orders.len());
        if let Ok(v) = HeaderValue::from_str(&next) {
            headers.insert(HeaderName::from_static(NEXT_PAGE_HEADER), v);
        }
    }
    let size: usize = records.iter().map(Bytes::len).sum::<usize>() + records.len() + 2;
    let mut body = Vec::with_capacity(size);
    push_array(&mut body, &records);
    page_response(&plan, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn since_and_comparisons() {
        let f = parse_where(
            "since='2019-10-25T18:53:10Z' and creation_date < '2020-01-01T00:00:00+00:00' AND id>=5",
        )
        .unwrap();
        let t = Utc.with_ymd_and_hms(2019, 10, 25, 18, 53, 10).unwrap();
        let n = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            f,
            vec![
                Filter::Date(DateField::Modification, Cmp::Ge, t),
                Filter::Date(DateField::Creation, Cmp::Lt, n),
                Filter::Id(Cmp::Ge, 5),
            ]
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for w in [
            "since>'2019-10-25T18:53:10Z'",
            "since='tomorrow'",
            "colour='red'",
            "id=1 or id=2",
            "id=1 id=2",
            "modification_date >= 5",
            "since='2019",
            "id ~ 3",
        ] {
            let e = parse_where(w).unwrap_err();
            assert_eq!(e.parameter, "where", "{w}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(1234)), Ok(1234));
        assert!(decode_cursor("garbage!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v2:1")).is_err());
    }

    #[test]
    fn auth_header_needs_all_three_parts() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(hub_authorized(
            &h("User u, Organization o, Element e"),
            "u",
            "o"
        ));
        assert!(hub_authorized(
            &h("Element e,User u,Organization o"),
            "u",
            "o"
        ));
        assert!(!hub_authorized(&h("User u, Organization o"), "u", "o"));
        assert!(!hub_authorized(
            &h("User u, Organization x, Element e"),
            "u",
            "o"
        ));
        assert!(!hub_authorized(
            &h("User u, Organization o, Element "),
            "u",
            "o"
        ));
        assert!(!hub_authorized(&HeaderMap::new(), "u", "o"));
    }
}
