//! The JSON pieces every dialect's reader uses: strings borrowed from the payload,
//! objects kept as raw (key, value) pairs in order, integrity objects, errors.

use super::*;
use crate::core::integrity;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::marker::PhantomData;

pub(super) fn err<T>(s: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(s.into()))
}

/// A string that borrows from the payload unless it holds escapes.
#[derive(Deserialize)]
pub(super) struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A JSON object kept as (key, raw value) pairs, in order.
pub(super) struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(12);
                while let Some((k, v)) = m.next_entry::<Str<'a>, &'a RawValue>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(de::Error::custom(format!("more than {MAX_FIELDS} fields")));
                    }
                    // readers differ on which of two same-named members counts (the
                    // first, the last): a message that names one twice says two things
                    if fields
                        .iter()
                        .any(|(name, _): &(Cow<'_, str>, _)| *name == k.0)
                    {
                        return Err(de::Error::custom(format!("member {:?} appears twice", k.0)));
                    }
                    fields.push((k.0, v));
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Hands each of `fields` to `take`, which answers whether it read it; the fields it did
/// not read stay in `fields`, in order. What a reader leaves is kept in the object's own
/// vector, without a second one (an allocation less per object, per message).
pub(super) fn keep_unread<'a>(
    fields: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
    mut take: impl FnMut(&Cow<'a, str>, &'a RawValue) -> Result<bool, ParseError>,
) -> Result<(), ParseError> {
    let mut kept = 0;
    for i in 0..fields.len() {
        if !take(&fields[i].0, fields[i].1)? {
            fields.swap(kept, i);
            kept += 1;
        }
    }
    fields.truncate(kept);
    Ok(())
}

pub(super) fn string<'a>(field: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, ParseError> {
    match serde_json::from_str::<Str<'a>>(raw.get()) {
        Ok(s) => Ok(s.0),
        Err(_) => err(format!("field {field} is not a string")),
    }
}

pub(super) fn object<'a>(field: &str, raw: &'a RawValue) -> Result<RawObject<'a>, ParseError> {
    object_as(field, raw)
}

/// Field `field`, a JSON object, read as `T`; the error names the field.
fn object_as<'a, T: Deserialize<'a>>(field: &str, raw: &'a RawValue) -> Result<T, ParseError> {
    serde_json::from_str::<T>(raw.get()).or_else(|e| {
        if raw.get().trim_start().starts_with('{') {
            err(format!("field {field}: {e}"))
        } else {
            err(format!("field {field} is not an object"))
        }
    })
}

/// The members of an integrity object this node reads, read without a vector of all of
/// them (two allocations less per message). The others are ignored: the node writes the
/// integrity it computed, never the object it read. `method` or `value` named twice
/// is refused.
#[derive(Deserialize)]
struct IntegrityFields<'a> {
    #[serde(borrow, default)]
    method: Option<Str<'a>>,
    #[serde(borrow, default)]
    value: Option<Str<'a>>,
}

pub(super) fn parse_integrity(field: &str, raw: &RawValue) -> Result<Integrity, ParseError> {
    let fields: IntegrityFields<'_> = object_as(field, raw)?;
    let (method, value) = (fields.method.map(|s| s.0), fields.value.map(|s| s.0));
    let Some(method_name) = method else {
        return err(format!("{field} has no method"));
    };
    let Some(method) = Method::from_name(&method_name) else {
        return err(format!("{field} method {method_name:?} is unknown"));
    };
    let digest = match (method.digest_len(), value) {
        (Some(_), Some(v)) => Some(
            integrity::decode_value(method, &v).map_err(|e| ParseError(format!("{field}: {e}")))?,
        ),
        (Some(_), None) if method.verifies_content() => {
            return err(format!("{field} has no value"));
        }
        _ => None,
    };
    Ok(Integrity { method, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_unread_leaves_the_unread_fields_in_order_and_stops_at_an_error() {
        let text = r#"{"a": 1, "x": 2, "b": 3, "y": 4, "c": 5}"#;
        let RawObject(mut fields) = serde_json::from_str(text).unwrap();
        let mut read = Vec::new();
        keep_unread(&mut fields, |k, v| {
            let take = k.len() == 1 && "xy".contains(k.as_ref());
            if take {
                read.push(v.get().to_string());
            }
            Ok(take)
        })
        .unwrap();
        let left: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(left, ["a", "b", "c"]);
        assert_eq!(read, ["2", "4"]);

        let RawObject(mut fields) = serde_json::from_str(text).unwrap();
        let e = keep_unread(&mut fields, |k, _| match k.as_ref() {
            "b" => err("b refused"),
            _ => Ok(false),
        })
        .unwrap_err();
        assert_eq!(e.0, "b refused");
    }
}
