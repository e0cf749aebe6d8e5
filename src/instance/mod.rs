//! Open Connectors instance JSON → typed, validated instances and jobs.
//!
//! One JSON document per connector instance, as Open Connectors takes it on
//! `POST /instances` (DESIGN 2.2). Each resource of
//! `event.poller.configuration` becomes a job (instance × resource).
//!
//! - [`model`]: the validated types ([`Instance`], [`Resource`], [`DateField`]).
//! - [`FieldPath`]: dotted paths into provider records.
//! - [`parse_str`]: one document → an instance or *all* of its problems.
//! - [`load_file`], [`load_path`], [`load_paths`]: files and directories;
//!   one bad file never stops the others.
//! - [`ConfigProblem`]: `FILE: JSON_PATH: REASON`.
//!
//! Keys we add to the Open Connectors format, all inside `configuration`:
//! `event.poller.refresh_interval_seconds`, `event.poller.backfill.from`,
//! `base.url`, `connection.mode`, `hub.user.secret`,
//! `hub.organization.secret`, `hub.element.token`. Unknown keys are kept in
//! [`Instance::extra`] (top level: ignored), because real instance documents
//! carry many keys that matter to other parts of Open Connectors only.

mod field_path;
mod load;
pub mod model;
mod parse;
mod problem;
mod values;

pub use field_path::{FieldPath, FieldPathError, json_kind};
pub use load::{Loaded, load_file, load_path, load_paths};
pub use model::{
    Connection, DateField, ExtraConfig, ExtraValue, HubCredentials, IdOrigin, Instance,
    OAuthConfig, Resource, VendorType,
};
pub use parse::parse_str;
pub use problem::ConfigProblem;

#[cfg(test)]
mod tests;
