//! Deserialization of `KIND`-tagged config enums that keeps error paths.
//!
//! serde's derived internally tagged enums buffer the whole variant before deserializing it,
//! so an error inside a variant loses its key path: a wrong type three levels down is reported
//! at the enum. [`impl_kind_deserialize!`](crate::impl_kind_deserialize) implements
//! `Deserialize` for an enum of newtype variants (`Variant(Variant)`, the struct named as its
//! `KIND`) so that, when `KIND` is the map's first key, the variant is read straight from the
//! rest of the map and the deserializer keeps tracking paths. That is always the case with
//! velo-io's configuration (keys are sorted and `KIND` sorts before lower-case keys) and with
//! files that write `KIND` first. Otherwise the map is buffered, as serde would do.
//!
//! Serialization and JSON Schema keep using `#[serde(tag = "KIND")]` and the derives.

/// Implements `Deserialize` for a `KIND`-tagged enum of newtype variants.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize)]
/// #[serde(tag = "KIND")]
/// enum Shape { Circle(Circle) }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Circle { radius: f64 }
///
/// velo_core::impl_kind_deserialize!(Shape { Circle });
///
/// let shape: Shape = serde_json::from_str(r#"{"KIND": "Circle", "radius": 2.0}"#)?;
/// assert_eq!(shape, Shape::Circle(Circle { radius: 2.0 }));
/// let error = serde_json::from_str::<Shape>(r#"{"KIND": "Square"}"#).unwrap_err();
/// assert!(error.to_string().contains("unknown variant `Square`, expected `Circle`"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[macro_export]
macro_rules! impl_kind_deserialize {
    ($enum:ident { $($variant:ident),+ $(,)? }) => {
        impl<'de> $crate::__private::serde::Deserialize<'de> for $enum {
            fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
            where
                D: $crate::__private::serde::Deserializer<'de>,
            {
                use $crate::__private::serde::de::{self, Error as _};
                const VARIANTS: &[&str] = &[$(stringify!($variant)),+];

                fn from_kind<'de, M: de::MapAccess<'de>>(
                    kind: &str,
                    rest: M,
                ) -> ::core::result::Result<$enum, M::Error> {
                    let rest = de::value::MapAccessDeserializer::new(rest);
                    match kind {
                        $(stringify!($variant) => <$variant as $crate::__private::serde::Deserialize>::deserialize(rest).map($enum::$variant),)+
                        other => Err(M::Error::unknown_variant(other, VARIANTS)),
                    }
                }

                struct Visitor;
                impl<'de> de::Visitor<'de> for Visitor {
                    type Value = $enum;

                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        write!(f, "a map whose `KIND` is one of {}", VARIANTS.join(", "))
                    }

                    fn visit_map<M: de::MapAccess<'de>>(
                        self,
                        mut map: M,
                    ) -> ::core::result::Result<$enum, M::Error> {
                        let Some(first) = map.next_key::<String>()? else {
                            return Err(M::Error::missing_field("KIND"));
                        };
                        if first == "KIND" {
                            let kind: String = map.next_value()?;
                            return from_kind(&kind, map);
                        }
                        // `KIND` is not first: buffer the map, then read the variant from it.
                        let mut buffered = $crate::__private::serde_json::Map::new();
                        buffered.insert(first, map.next_value()?);
                        while let Some((key, value)) = map.next_entry::<String, $crate::__private::serde_json::Value>()? {
                            buffered.insert(key, value);
                        }
                        let kind = match buffered.remove("KIND") {
                            Some($crate::__private::serde_json::Value::String(kind)) => kind,
                            Some(other) => {
                                return Err(M::Error::custom(format!("`KIND` must be a string, found {other}")));
                            }
                            None => return Err(M::Error::missing_field("KIND")),
                        };
                        let rest = de::value::MapDeserializer::new(buffered.into_iter());
                        from_kind(&kind, rest).map_err(|error: $crate::__private::serde_json::Error| M::Error::custom(error))
                    }
                }

                deserializer.deserialize_map(Visitor)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize)]
    #[serde(tag = "KIND")]
    enum Shape {
        Circle(Circle),
        Square(Square),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Circle {
        radius: f64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Square {
        #[serde(default)]
        side: u32,
    }

    crate::impl_kind_deserialize!(Shape { Circle, Square });

    fn parse(yaml: &str) -> Result<Shape, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn kind_first_or_later_both_parse() {
        assert_eq!(
            parse("{KIND: Circle, radius: 1.5}"),
            Ok(Shape::Circle(Circle { radius: 1.5 }))
        );
        assert_eq!(
            parse("{radius: 1.5, KIND: Circle}"),
            Ok(Shape::Circle(Circle { radius: 1.5 }))
        );
        assert_eq!(
            parse("{KIND: Square}"),
            Ok(Shape::Square(Square { side: 0 }))
        );
    }

    #[test]
    fn errors_name_fields_kinds_and_types() {
        let error = parse("{KIND: Square, side: wide}").expect_err("wrong type");
        assert!(error.contains("side") || error.contains("wide"), "{error}");
        let error = parse("{KIND: Circle, radius: 1, colour: red}").expect_err("unknown field");
        assert!(error.contains("unknown field `colour`"), "{error}");
        let error = parse("{colour: red, KIND: Circle, radius: 1}").expect_err("unknown field");
        assert!(error.contains("unknown field `colour`"), "{error}");
        let error = parse("{KIND: Triangle}").expect_err("unknown kind");
        assert!(
            error.contains("unknown variant `Triangle`, expected `Circle` or `Square`"),
            "{error}"
        );
        let error = parse("{radius: 1}").expect_err("no kind");
        assert!(error.contains("missing field `KIND`"), "{error}");
        let error = parse("{}").expect_err("empty");
        assert!(error.contains("missing field `KIND`"), "{error}");
    }

    #[test]
    fn serialization_round_trips() {
        let shape = Shape::Square(Square { side: 3 });
        let text = serde_yaml::to_string(&shape).expect("serializes");
        assert_eq!(parse(&text), Ok(shape));
    }
}
