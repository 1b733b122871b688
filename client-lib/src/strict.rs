//! The one strict reading of every signed document (envelope, manifest,
//! root).
//!
//! Plain `serde_json::from_slice` is too lenient for signed documents in
//! two ways:
//!
//! - serde's derived `Deserialize` for a struct also accepts a JSON
//!   *array* and assigns its elements to the fields in declaration order,
//!   so a signed array would mean whatever the Rust field order says, which
//!   no document states;
//! - a JSON object with a repeated key is read last-wins by every map
//!   type, so a signer and a verifier (or two verifiers) can read the same
//!   signed bytes differently.
//!
//! Neither serde nor serde_json offers a switch for either, and no
//! maintained crate provides a strict mode, so this module reads in two
//! small hand-written passes:
//!
//! 1. the bytes are parsed into a [`serde_json::Value`] by a visitor that
//!    refuses a duplicate key in any object at any depth (serde_json's own
//!    parser still enforces the JSON grammar, trailing-data checks and its
//!    nesting limit of 128);
//! 2. the target type is deserialized from that value through
//!    [`StrictRef`], a deserializer whose structs accept JSON objects only.
//!
//! Everything the formats contain (strings, numbers, booleans, options,
//! sequences, maps, structs, newtypes, unit-variant enums) works through
//! it. Types that buffer their input (`#[serde(flatten)]`, untagged
//! enums) would bypass the struct check and must not be used in signed
//! documents.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Parses `bytes` as `T` with the strict reading: JSON objects only where
/// `T` has a struct, no duplicate key anywhere. `what` names the document
/// in the [`Error::Malformed`] it returns.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    let value = parse_value(bytes).map_err(|e| Error::malformed(what, e))?;
    from_value(&value).map_err(|e| Error::malformed(what, e))
}

/// Pass 1 alone: parses `bytes` into a value, refusing duplicate keys.
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let NoDuplicates(value) = de::Deserialize::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Pass 2 alone: deserializes `T` from an already parsed value, accepting
/// only objects for structs.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(StrictRef(value))
}

/// A JSON value parsed with duplicate keys refused.
struct NoDuplicates(Value);

impl<'de> de::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor).map(NoDuplicates)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(NoDuplicates(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?} in a JSON object"
                )));
            }
            let NoDuplicates(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The name of a value's JSON type, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A deserializer over a parsed value whose structs accept JSON objects
/// only (never arrays); everything else reads as serde_json would.
#[derive(Debug, Clone, Copy)]
pub struct StrictRef<'a>(pub &'a Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for StrictRef<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for StrictRef<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    // Finite by construction (pass 1 refuses the others).
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(StrictRef));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Object(map) => {
                let mut access =
                    MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), StrictRef(v))));
                let out = visitor.visit_map(&mut access)?;
                access.end()?;
                Ok(out)
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::custom(format_args!(
                "expected a JSON object for {name}, found {}",
                kind(other)
            ))),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::custom(format_args!(
                "expected a JSON object, found {}",
                kind(other)
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format_args!(
                "expected a string naming a variant, found {}",
                kind(other)
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct identifier
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Vec<Inner>,
        map: BTreeMap<String, Inner>,
    }

    #[test]
    fn objects_read_as_with_serde_json() {
        let text = br#"{"inner":[{"a":1,"b":null},{"a":2,"b":"x"}],"map":{"k":{"a":3}}}"#;
        let strict: Outer = from_slice(text, "doc").unwrap();
        let lenient: Outer = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, lenient);
    }

    #[test]
    fn arrays_for_structs_are_refused_at_any_depth() {
        let top = br#"[[{"a":1}],{}]"#;
        assert!(
            serde_json::from_slice::<Outer>(top).is_ok(),
            "serde is lenient"
        );
        let err = from_slice::<Outer>(top, "doc").unwrap_err();
        assert!(err.to_string().contains("found an array"), "{err}");

        let nested = br#"{"inner":[[1,null]],"map":{}}"#;
        assert!(
            serde_json::from_slice::<Outer>(nested).is_ok(),
            "serde is lenient"
        );
        let err = from_slice::<Outer>(nested, "doc").unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("found an array"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_in_structs_and_maps_at_any_depth() {
        for text in [
            &br#"{"inner":[],"map":{},"map":{}}"#[..],
            br#"{"inner":[],"map":{"k":{"a":1},"k":{"a":2}}}"#,
            br#"{"inner":[{"a":1,"a":1}],"map":{}}"#,
        ] {
            let err = from_slice::<Outer>(text, "doc").unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
        // Even inside free-form values.
        let err = from_slice::<Value>(br#"{"x":[{"y":1,"y":2}]}"#, "doc").unwrap_err();
        assert!(err.to_string().contains(r#"duplicate key "y""#), "{err}");
    }

    #[test]
    fn trailing_data_and_deep_nesting_are_refused() {
        assert!(from_slice::<Value>(b"{} {}", "doc").is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(from_slice::<Value>(deep.as_bytes(), "doc").is_err());
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(from_slice::<Value>(ok.as_bytes(), "doc").is_ok());
    }
}
