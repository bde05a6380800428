//! Where in a JSON or YAML file a problem is, for problems found after
//! parsing (a value that is the wrong kind for its place, a GI that does not
//! fit). A parsed tree keeps no positions, so the text is read again down to
//! the node at fault, which then refuses to be read: the parser marks that
//! refusal with the node's line and column. Works with any serde format that
//! marks errors raised while a node is read (serde_json, serde_yaml_ng).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step from the top of a document down to the node a problem is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The value under this key.
    Value(String),
    /// The key itself (an unexpected field, a bad name used as a key).
    Key(String),
    /// This item of a list.
    Item(usize),
}

impl Step {
    pub fn value(key: &str) -> Step {
        Step::Value(key.to_string())
    }
}

/// What the walk refuses the node with; only its position is used.
const HERE: &str = "the node with the problem";

/// Reads a document, following its steps into the children, and fails with
/// an error raised at the node the steps end at. Deserializing with it
/// succeeds only when there is no such node.
pub struct Walk<'a>(pub &'a [Step]);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Walk<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(HERE))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(HERE)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((step, rest)) = self.0.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        let mut index = 0;
        loop {
            let item = match step {
                Step::Item(wanted) if *wanted == index => seq.next_element_seed(Walk(rest))?,
                _ => seq.next_element::<IgnoredAny>()?.map(drop),
            };
            if item.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((step, rest)) = self.0.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        let (wanted, refuse_key) = match step {
            Step::Key(wanted) if rest.is_empty() => (Some(wanted.as_str()), true),
            Step::Value(wanted) => (Some(wanted.as_str()), false),
            _ => (None, false),
        };
        while let Some(found) = map.next_key_seed(MatchKey { wanted, refuse_key })? {
            if found {
                map.next_value_seed(Walk(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads a mapping key: whether it is the string `wanted`; refused instead
/// when `refuse_key` is set. Keys of other kinds never match.
struct MatchKey<'a> {
    wanted: Option<&'a str>,
    refuse_key: bool,
}

impl<'de> DeserializeSeed<'de> for MatchKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MatchKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        let found = self.wanted == Some(key);
        if found && self.refuse_key {
            Err(E::custom(HERE))
        } else {
            Ok(found)
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Line and column (from 1) of the node at `steps` in JSON `text`.
pub fn in_json(text: &str, steps: &[Step]) -> Option<(usize, usize)> {
    let refusal = Walk(steps)
        .deserialize(&mut serde_json::Deserializer::from_str(text))
        .err()?;
    (refusal.line() > 0).then(|| (refusal.line(), refusal.column()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n  \"a\": [1,\n    {\"b\": true, \"c\": \"x\"}],\n  \"d\": {}\n}";

    #[test]
    fn finds_values_keys_and_list_items_by_line() {
        let line = |steps: &[Step]| in_json(TEXT, steps).map(|(line, _)| line);
        assert_eq!(line(&[Step::value("a"), Step::Item(0)]), Some(2));
        assert_eq!(
            line(&[Step::value("a"), Step::Item(1), Step::value("c")]),
            Some(3)
        );
        assert_eq!(
            line(&[Step::value("a"), Step::Item(1), Step::Key("b".into())]),
            Some(3)
        );
        assert_eq!(line(&[Step::value("d")]), Some(4));
        assert_eq!(line(&[Step::value("nothing")]), None);
        assert_eq!(line(&[Step::value("a"), Step::Item(5)]), None);
    }
}
