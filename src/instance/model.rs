//! The typed, validated form of one Open Connectors instance JSON document.
//!
//! Everything here was checked by the loader; a value of these types is a
//! configuration the poller can run. Secrets are [`Secret`]s, so `Debug` of any
//! type in this module never prints one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::FieldPath;
use crate::element::ConnectionMode;
use crate::javadate::{JavaDateFormat, Zone};
use crate::secret::Secret;
use crate::template::UrlTemplate;

/// Poll interval when neither `event.poller.refresh_interval` nor
/// `event.poller.refresh_interval_seconds` is set: 15 minutes, the value Open
/// Connectors' own instance examples use.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// `createdCheckTolerance` when unset: 1 second. Providers commonly write the
/// created and updated stamps of a new record a few milliseconds apart; at the
/// second precision of most date patterns that can straddle a second boundary
/// and would turn a creation into an UPDATED event. A genuine update within
/// one second of creation is, for a poller, the same observed state anyway.
pub const DEFAULT_CREATED_CHECK_TOLERANCE: Duration = Duration::from_secs(1);

/// Upper bound of every duration key (refresh interval, `pollDelay`,
/// `createdCheckTolerance`): 31 days. Larger values are typos (seconds written
/// into a minutes key), and the bound keeps date arithmetic downstream far
/// from chrono's limits, so it can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// One connector instance: one provider account and the resources polled in it.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The file this instance was read from, for messages.
    pub source: PathBuf,
    /// Stable identity (event `instanceId`, part of every job id): the
    /// document's `id`, else its non-empty `name`, else the file stem.
    pub id: String,
    /// Which of those three [`Instance::id`] came from.
    pub id_origin: IdOrigin,
    /// `element.key`, e.g. `infusionsoftecommerce`: which provider definition
    /// talks to this instance.
    pub element_key: String,
    /// `event.notification.enabled` (default false). A disabled instance is
    /// loaded and validated but not polled.
    pub enabled: bool,
    /// `event.vendor.type` (default polling).
    pub vendor_type: VendorType,
    /// Time between polls. Our `event.poller.refresh_interval_seconds` wins
    /// over Open Connectors' `event.poller.refresh_interval` (minutes, at
    /// least 1); default [`DEFAULT_REFRESH_INTERVAL`].
    pub refresh_interval: Duration,
    /// `event.notification.callback.url`, carried in event headers for
    /// downstream delivery; we never call it. Absolute http(s) when set.
    pub callback_url: Option<String>,
    /// Our extension `base.url`: overrides the element's base URL (a sandbox,
    /// a regional endpoint). Absolute http(s), no query, no credentials, no
    /// trailing `/`, so that `base_url + resource path` is the request URL.
    pub base_url: Option<String>,
    /// Our extension `connection.mode`: call the provider directly (default)
    /// or through an Open Connectors hub.
    pub connection: Connection,
    pub oauth: OAuthConfig,
    /// `event.poller.backfill.from` (RFC 3339): where the first poll of a new
    /// job starts instead of "now".
    pub backfill_from: Option<DateTime<Utc>>,
    /// The resources of `event.poller.configuration`, in document order. Each
    /// one is a job. Empty only when the instance is not polled.
    pub resources: Vec<Resource>,
    /// Every other `configuration` key, kept for the element layer (for
    /// example `oauth.user.refresh_token`). Secret-looking keys are redacted.
    pub extra: ExtraConfig,
}

impl Instance {
    /// True when the poller should schedule this instance's resources:
    /// events enabled and delivered by polling.
    pub fn is_polled(&self) -> bool {
        self.enabled && self.vendor_type == VendorType::Polling
    }
}

/// Where an [`Instance::id`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdOrigin {
    /// The document's `id` (a number or a string).
    Id,
    /// The document's non-empty `name`.
    Name,
    /// The file name without its extension: renaming the file changes the
    /// instance's identity and so starts its jobs afresh.
    FileStem,
}

impl IdOrigin {
    /// The JSON path of the value the id came from, for messages.
    pub fn json_path(self) -> &'static str {
        match self {
            IdOrigin::Id => "$.id",
            IdOrigin::Name => "$.name",
            IdOrigin::FileStem => "$",
        }
    }
}

/// How the provider delivers events: `event.vendor.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VendorType {
    /// We ask the provider for changes every refresh interval.
    #[default]
    Polling,
    /// The provider pushes changes; this service does not poll the instance.
    Webhook,
}

/// Our extension `connection.mode`, with what each mode needs.
#[derive(Clone, Debug, Default)]
pub enum Connection {
    /// Call the provider's own API with the instance's OAuth credentials.
    #[default]
    Direct,
    /// Call the Open Connectors hub API (`/hubs/...`), authenticated with the
    /// hub's user, organization and element credentials.
    Hub(HubCredentials),
}

impl Connection {
    /// The mode, as element definitions are keyed by it.
    pub fn mode(&self) -> ConnectionMode {
        match self {
            Self::Direct => ConnectionMode::Direct,
            Self::Hub(_) => ConnectionMode::Hub,
        }
    }
}

/// Open Connectors hub credentials (`hub.user.secret`,
/// `hub.organization.secret`, `hub.element.token`). Each is optional here
/// because a deployment may supply them another way.
#[derive(Clone, Debug, Default)]
pub struct HubCredentials {
    pub user_secret: Option<Secret>,
    pub organization_secret: Option<Secret>,
    pub element_token: Option<Secret>,
}

/// OAuth settings of the instance. Empty strings (as in the seed) are `None`.
#[derive(Clone, Debug, Default)]
pub struct OAuthConfig {
    /// `oauth.api.key`: the OAuth client id.
    pub api_key: Option<Secret>,
    /// `oauth.api.secret`: the OAuth client secret.
    pub api_secret: Option<Secret>,
    /// `oauth.callback.url`: the redirect URI registered with the provider;
    /// token requests must repeat it exactly.
    pub callback_url: Option<String>,
    /// `providerData.code`: the authorization code from the redirect.
    pub code: Option<Secret>,
}

/// One polled resource (one key of `event.poller.configuration`).
#[derive(Clone, Debug)]
pub struct Resource {
    /// The resource's key, e.g. `orders`; the events' `objectType`.
    pub name: String,
    /// `url`: relative request URL with date placeholders.
    pub url: UrlTemplate,
    /// `idField`: where the record's id is.
    pub id_field: FieldPath,
    /// Last-modified date of a record; drives change detection.
    pub updated: DateField,
    /// Creation date, used to tell CREATED from UPDATED.
    pub created: Option<DateField>,
    /// `pageSize`: records per page, when the element pages by size.
    pub page_size: Option<u32>,
    /// `pollDelay` (seconds, default 0): subtracted from the last poll time,
    /// for providers whose changes become visible late.
    pub poll_delay: Duration,
    /// `filterByUpdatedDate` (default true); when false the created date is
    /// the filter, and [`Resource::created`] is guaranteed to be set.
    pub filter_by_updated_date: bool,
    /// `filterByCurrentDate` (default false): bound the window above by the
    /// poll's start time.
    pub filter_by_current_date: bool,
    /// `deadLetterFutureDated` (default false): a record dated after the
    /// provider's clock goes to the dead-letter topic instead of being
    /// published once. Either way it never moves the watermark.
    pub dead_letter_future_dated: bool,
    /// `createdCheckTolerance` (seconds): a record is CREATED when its created
    /// and updated dates are at most this far apart. Default
    /// [`DEFAULT_CREATED_CHECK_TOLERANCE`].
    pub created_check_tolerance: Duration,
}

impl Resource {
    /// The reference time of a poll: `last_poll` minus `pollDelay`
    /// (DESIGN 2.3). Saturates at chrono's minimum instead of panicking.
    pub fn reference_time(&self, last_poll: DateTime<Utc>) -> DateTime<Utc> {
        TimeDelta::from_std(self.poll_delay)
            .ok()
            .and_then(|delay| last_poll.checked_sub_signed(delay))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The relative URL of a poll after `last_poll`: the template rendered at
    /// [`Resource::reference_time`].
    pub fn url_after(&self, last_poll: DateTime<Utc>, service_zone: &Zone) -> String {
        self.url
            .render(self.reference_time(last_poll), service_zone)
    }

    /// The date field that filters the window: the updated date unless
    /// `filterByUpdatedDate` is false.
    pub fn filter_date(&self) -> &DateField {
        match (&self.created, self.filter_by_updated_date) {
            (Some(created), false) => created,
            _ => &self.updated,
        }
    }
}

/// A date inside a record: where it is and how to read it.
#[derive(Clone, Debug)]
pub struct DateField {
    pub path: FieldPath,
    /// The provider's Java date pattern, compiled once.
    pub format: JavaDateFormat,
    /// `*DateTimezone` (default UTC): the zone of dates whose pattern carries
    /// no offset (for example one with a quoted `'Z'` literal).
    pub zone: Zone,
}

/// The `configuration` keys the model does not interpret.
#[derive(Clone, Debug, Default)]
pub struct ExtraConfig(pub(crate) BTreeMap<String, ExtraValue>);

/// One uninterpreted configuration value.
#[derive(Clone, Debug)]
pub enum ExtraValue {
    Plain(serde_json::Value),
    /// The key names a credential (contains `secret`, `token`, `password`,
    /// `credential`, `apikey`, `privatekey`, ignoring case and `.`, `_`, `-`),
    /// or the value is an object holding such a key. Non-string values are
    /// kept as their JSON text.
    Secret(Secret),
}

impl ExtraConfig {
    pub fn get(&self, key: &str) -> Option<&ExtraValue> {
        self.0.get(key)
    }

    /// A non-secret value.
    pub fn plain(&self, key: &str) -> Option<&serde_json::Value> {
        match self.0.get(key)? {
            ExtraValue::Plain(value) => Some(value),
            ExtraValue::Secret(_) => None,
        }
    }

    /// A secret value.
    pub fn secret(&self, key: &str) -> Option<&Secret> {
        match self.0.get(key)? {
            ExtraValue::Secret(secret) => Some(secret),
            ExtraValue::Plain(_) => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ExtraValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
