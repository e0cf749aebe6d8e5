//! Dotted paths into a provider record: `idField`, `*DateField`.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A dotted path such as `id` or `contact.id`: object keys separated by `.`.
///
/// A segment made of digits also indexes an array (`order_items.0.id`). Keys
/// that themselves contain a `.` cannot be addressed; Open Connectors has the
/// same limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("the field path is empty")]
    Empty,
    #[error("the field path `{path}` has an empty segment (write `a.b.c`)")]
    EmptySegment { path: String },
}

impl FieldPath {
    /// Parses a dotted path; surrounding whitespace is ignored.
    ///
    /// # Errors
    /// An empty path, or an empty segment (`a..b`, `.a`, `a.`).
    pub fn parse(s: &str) -> Result<FieldPath, FieldPathError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(FieldPathError::Empty);
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(FieldPathError::EmptySegment {
                path: text.to_owned(),
            });
        }
        Ok(FieldPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The value at this path in `record`, if every step exists.
    pub fn get<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(record, |value, segment| match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }
}

/// What kind of JSON value `v` is, for messages ("expected a string, got
/// a number").
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl FromStr for FieldPath {
    type Err = FieldPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldPath::parse(s)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gets_nested_values_and_array_items() {
        let record =
            json!({"id": 7, "contact": {"id": "c-1"}, "order_items": [{"id": 10}, {"id": 11}]});
        let get = |p: &str| FieldPath::parse(p).unwrap().get(&record).cloned();
        assert_eq!(get("id"), Some(json!(7)));
        assert_eq!(get(" contact.id "), Some(json!("c-1")));
        assert_eq!(get("order_items.1.id"), Some(json!(11)));
        assert_eq!(get("order_items.2.id"), None);
        assert_eq!(get("contact.missing"), None);
        assert_eq!(get("id.deeper"), None);
    }

    #[test]
    fn refuses_empty_paths_and_segments() {
        assert_eq!(FieldPath::parse("  "), Err(FieldPathError::Empty));
        for bad in ["a..b", ".a", "a."] {
            assert!(matches!(
                FieldPath::parse(bad),
                Err(FieldPathError::EmptySegment { .. })
            ));
        }
        let path: FieldPath = "a.b.c".parse().unwrap();
        assert_eq!(path.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(path.to_string(), "a.b.c");
    }
}
