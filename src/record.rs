//! Reading a few named fields of a provider record kept as raw JSON. A
//! record can be kilobytes and the poller reads two or three of its fields
//! (the id, the dates), twice per record (the pager's keyset, detection):
//! only the top level is split, without hashing or copying its keys, and
//! only the values on a field's path are parsed. The raw bytes go into the
//! event untouched. (Parsing whole records into `Value` trees was ~80 % of
//! detection's time by the micro bench.)

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::instance::FieldPath;

/// The top level of one JSON object: each key (borrowed unless it has
/// escapes) with its raw value, in the record's order.
pub struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// # Errors
    /// The record is not valid JSON, or not an object, in words for a dead
    /// letter.
    pub fn read(raw: &'a RawValue) -> Result<Self, String> {
        serde_json::from_str(raw.get()).map_err(|e| {
            if raw.get().trim_start().starts_with('{') {
                format!("record is not valid JSON: {e}")
            } else {
                "record is not a JSON object".into()
            }
        })
    }

    /// The value at `path`; nested steps split only the objects (or index
    /// the arrays) on the way.
    pub fn get(&self, path: &FieldPath) -> Option<Value> {
        let mut segments = path.segments();
        let mut at: &RawValue = self.field(segments.next()?)?;
        for segment in segments {
            at = step(at, segment)?;
        }
        serde_json::from_str(at.get()).ok()
    }

    /// As a JSON object with repeated keys reads everywhere else in
    /// serde_json: the last one counts.
    fn field(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

fn step<'a>(raw: &'a RawValue, segment: &str) -> Option<&'a RawValue> {
    let text = raw.get().trim_start();
    if text.starts_with('{') {
        Fields::read(raw).ok()?.field(segment)
    } else if text.starts_with('[') {
        let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).ok()?;
        items.get(segment.parse::<usize>().ok()?).copied()
    } else {
        None
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TopLevel)
    }
}

struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            fields.push((k, v));
        }
        Ok(Fields(fields))
    }
}

/// A key, borrowed from the record unless it has escapes (serde's own
/// `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn reads_top_level_and_nested_fields_without_parsing_the_rest() {
        let r = raw(
            r#"{"id": 7, "big": {"x": [1, 2, {"deep": true}]}, "customer": {"name": "A\"B", "tags": ["a", "b"]},
                "when": "2024-01-01", "esc\u0061ped": 1}"#,
        );
        let f = Fields::read(&r).unwrap();
        assert_eq!(f.get(&path("id")), Some(Value::from(7)));
        assert_eq!(f.get(&path("customer.name")), Some(Value::from("A\"B")));
        assert_eq!(f.get(&path("customer.tags.1")), Some(Value::from("b")));
        assert_eq!(f.get(&path("escaped")), Some(Value::from(1)));
        assert_eq!(f.get(&path("customer.missing")), None);
        assert_eq!(f.get(&path("when.deeper")), None);
        assert_eq!(f.get(&path("nothing")), None);
    }

    #[test]
    fn the_last_of_repeated_keys_counts_as_in_serde_json() {
        let r = raw(r#"{"id": 1, "id": 2}"#);
        let v: Value = serde_json::from_str(r.get()).unwrap();
        assert_eq!(
            Fields::read(&r).unwrap().get(&path("id")),
            Some(v["id"].clone())
        );
    }

    #[test]
    fn what_is_not_an_object_is_told_apart_from_broken_json() {
        assert_eq!(
            Fields::read(&raw("[1, 2]")).err().unwrap(),
            "record is not a JSON object"
        );
        // RawValue holds valid JSON only; a broken nested object is found
        // only where a path steps into it, and reads as missing there.
        let r = raw(r#"{"a": "not an object"}"#);
        assert_eq!(Fields::read(&r).unwrap().get(&path("a.b")), None);
    }
}
