//! One instance's OAuth2 tokens as stored, and when to refresh them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Refresh when less than this is left, unless that is more than half the
/// lifetime (see [`TokenSet::needs_refresh`]). A minute covers a request
/// timeout with room to spare.
const MIN_REFRESH_MARGIN: TimeDelta = TimeDelta::seconds(60);

/// An access token this close to expiry is not sent any more: the request
/// could arrive after it expired.
const USABLE_MARGIN: TimeDelta = TimeDelta::seconds(5);

/// One instance's tokens, as stored. `Debug` shows no secret.
///
/// Serializes the secrets in clear: the store is responsible for
/// encrypting what it writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    #[serde(serialize_with = "expose_secret")]
    pub access_token: Secret,
    #[serde(serialize_with = "expose_secret")]
    pub refresh_token: Secret,
    /// When the access token expires, on our clock (`now + expires_in` at
    /// receipt, so the provider's clock does not matter).
    #[serde(with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// When the set was obtained; with `expires_at` it gives the lifetime,
    /// which sets how early to refresh. Absent in sets stored by hand.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// When the provider refused this set's refresh token for good
    /// (`invalid_grant`): the instance needs a new authorization. Stored
    /// so that operators see it from the state topic (`auth status`,
    /// `state list`), not only from the worker that met the refusal.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub refused_at: Option<DateTime<Utc>>,
}

impl TokenSet {
    /// Whether to refresh now: when less than `max(60 s, 10 % of the
    /// lifetime)` is left, that margin capped at half the lifetime. For
    /// Keap's 24 h tokens that is 2.4 h early, leaving hours to retry a
    /// failed refresh while the old token still works; for the sandbox's
    /// 10 s tokens it is 5 s, not "always".
    pub fn needs_refresh(&self, now: DateTime<Utc>) -> bool {
        let margin = match self.issued_at {
            Some(issued) => {
                let lifetime = (self.expires_at - issued).max(TimeDelta::zero());
                (lifetime / 10).max(MIN_REFRESH_MARGIN).min(lifetime / 2)
            }
            None => MIN_REFRESH_MARGIN,
        };
        // Checked: a stored set is data from outside and may hold dates
        // at the edge of chrono's range.
        now.checked_add_signed(margin)
            .is_none_or(|t| t >= self.expires_at)
    }

    /// Whether the access token can still be sent.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        now.checked_add_signed(USABLE_MARGIN)
            .is_some_and(|t| t < self.expires_at)
    }
}

fn expose_secret<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lifetime_s: i64, left_s: i64) -> (TokenSet, DateTime<Utc>) {
        let issued = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let expires = issued + TimeDelta::seconds(lifetime_s);
        (
            TokenSet {
                access_token: Secret::new("at"),
                refresh_token: Secret::new("rt"),
                expires_at: expires,
                issued_at: Some(issued),
                refused_at: None,
            },
            expires - TimeDelta::seconds(left_s),
        )
    }

    #[test]
    fn refresh_margin_scales_with_lifetime() {
        // 24 h: 10 % = 2.4 h early.
        let (t, now) = set(86_400, 8_641);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(86_400, 8_639);
        assert!(t.needs_refresh(now));
        // 10 min: the 60 s floor.
        let (t, now) = set(600, 61);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(600, 59);
        assert!(t.needs_refresh(now));
        // 10 s: capped at half the lifetime, not "always refresh".
        let (t, now) = set(10, 6);
        assert!(!t.needs_refresh(now));
        let (t, now) = set(10, 4);
        assert!(t.needs_refresh(now));
    }

    #[test]
    fn absurd_stored_dates_do_not_panic() {
        let t = TokenSet {
            access_token: Secret::new("at"),
            refresh_token: Secret::new("rt"),
            expires_at: DateTime::<Utc>::MAX_UTC,
            issued_at: Some(DateTime::<Utc>::MIN_UTC),
            refused_at: None,
        };
        // Far from expiry, whatever the absurd lifetime says.
        assert!(!t.needs_refresh(Utc::now()));
        assert!(t.usable(Utc::now()));
        let past = TokenSet {
            expires_at: DateTime::<Utc>::MIN_UTC,
            issued_at: Some(DateTime::<Utc>::MAX_UTC),
            ..t
        };
        assert!(past.needs_refresh(Utc::now()));
        assert!(!past.usable(Utc::now()));
    }

    #[test]
    fn token_sets_round_trip_and_debug_is_redacted() {
        let (t, _) = set(3600, 0);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""refresh_token":"rt""#), "{json}");
        assert_eq!(serde_json::from_str::<TokenSet>(&json).unwrap(), t);
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("\"at\"") && !debug.contains("\"rt\""),
            "{debug}"
        );
        // issued_at is optional in stored sets.
        let old = r#"{"access_token":"a","refresh_token":"r","expires_at":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(
            serde_json::from_str::<TokenSet>(old).unwrap().issued_at,
            None
        );
    }
}
