//! The crate's one error type. Every validation error names the field it is about, as a
//! path (`[3].customer.handles[0].value`), so an API can hand it to the producer as is.

/// What was wrong with an event.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EventError {
    /// A field is missing, has the wrong type or a value the contract does not allow.
    #[error("{}: {message}", if field.is_empty() { "event" } else { field.as_str() })]
    Invalid {
        /// The path of the field; empty for the event (or batch) as a whole.
        field: String,
        message: String,
    },
    /// The bytes are not a protobuf `omnilog.v1.Event`.
    #[error("not a protobuf omnilog.v1 message: {0}")]
    Decode(String),
}

impl EventError {
    /// A field with a value the contract does not allow.
    pub fn invalid(field: &str, message: String) -> Self {
        EventError::Invalid {
            field: field.to_owned(),
            message,
        }
    }

    /// A required field that is absent or null.
    pub fn missing(field: &str) -> Self {
        EventError::invalid(field, "is required".to_owned())
    }

    /// A serde error, located by its path.
    pub(crate) fn json(
        prefix: String,
        error: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        EventError::Invalid {
            field: join_path(&prefix, &path),
            message: in_contract_words(&error.into_inner().to_string()),
        }
    }

    /// The same error, located inside `prefix` (an array index or a parent field).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            EventError::Invalid { field, message } => EventError::Invalid {
                field: join_path(prefix, &field),
                message,
            },
            other => other,
        }
    }

    /// The path of the field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::Invalid { field, .. } => Some(field),
            EventError::Decode(_) => None,
        }
    }
}

fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else if field.is_empty() {
        prefix.to_owned()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// A serde message in the words of the contract (JSON's shapes and the field's values),
/// not of the Rust types behind it: `invalid type: string "x", expected struct RawCustomer`
/// becomes `invalid type: string "x", expected an object`, `unknown variant` becomes
/// `unknown value`, and `expected u32` says which whole numbers. Only serde's own phrases
/// are rewritten: what a client sent, quoted inside them, is left as it is. Every API answer
/// that carries a deserialiser's message goes through this.
pub fn in_contract_words(message: &str) -> String {
    let mut text = message
        .replace("unknown variant `", "unknown value `")
        .replace(", there are no variants", ", no value is accepted here");
    const UNTAGGED: &str = "data did not match any variant of untagged enum ";
    if let Some(at) = text.find(UNTAGGED) {
        let name_end = text[at + UNTAGGED.len()..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(text.len(), |end| at + UNTAGGED.len() + end);
        text.replace_range(
            at..name_end,
            "the value matches none of the shapes accepted here",
        );
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(at) = text.find(prefix) {
            let start = at + prefix.len();
            if let Some(comma) = text[start..].find(", expected ")
                && let Some(words) = unexpected_in_words(&text[start..start + comma])
            {
                text.replace_range(start..start + comma, words);
            }
        }
    }
    const EXPECTED: &str = ", expected ";
    if let Some(at) = text.rfind(EXPECTED) {
        let start = at + EXPECTED.len();
        // serde_json ends its messages with where in the text the error is.
        let end = text[start..]
            .find(" at line ")
            .map_or(text.len(), |end| start + end);
        if let Some(words) = expected_in_words(&text[start..end]) {
            text.replace_range(start..end, &words);
        }
    }
    text
}

/// serde's name of what it found, when it is a shape (not a quoted value).
fn unexpected_in_words(found: &str) -> Option<&'static str> {
    Some(match found {
        "map" => "an object",
        "sequence" => "an array",
        "unit value" | "unit" => "null",
        "Option value" | "newtype struct" | "enum" | "unit variant" | "newtype variant"
        | "tuple variant" | "struct variant" => "a value",
        "byte array" => "bytes",
        _ => return None,
    })
}

/// serde's name of what it expected, in JSON's words; `None` when it already speaks them.
fn expected_in_words(expected: &str) -> Option<String> {
    let expected = expected.trim();
    let shape = |prefixes: &[&str]| prefixes.iter().any(|p| expected.starts_with(p));
    if shape(&[
        "struct variant ",
        "internally tagged enum ",
        "adjacently tagged enum ",
    ]) || shape(&["struct "])
    {
        return Some("an object".to_owned());
    }
    if shape(&["tuple struct ", "tuple variant "]) {
        return Some("an array".to_owned());
    }
    if shape(&["unit struct ", "unit variant "]) {
        return Some("null".to_owned());
    }
    if shape(&["newtype struct ", "newtype variant "]) {
        return Some("a value".to_owned());
    }
    if shape(&["enum "]) {
        return Some("one of the names this field takes".to_owned());
    }
    if let Some(size) = expected
        .strip_prefix("a tuple of size ")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return Some(format!("an array of {size} items"));
    }
    let whole = |low: i128, high: i128| format!("a whole number from {low} to {high}");
    Some(match expected {
        "a sequence" => "an array".to_owned(),
        "a map" => "an object".to_owned(),
        "a borrowed string" | "a borrowed byte array" | "a byte array" => "a string".to_owned(),
        "a character" | "char" => "a single character".to_owned(),
        "unit" => "null".to_owned(),
        "option" => "a value or null".to_owned(),
        "u8" => whole(0, u8::MAX.into()),
        "u16" => whole(0, u16::MAX.into()),
        "u32" => whole(0, u32::MAX.into()),
        "u64" | "usize" => whole(0, u64::MAX.into()),
        "i8" => whole(i8::MIN.into(), i8::MAX.into()),
        "i16" => whole(i16::MIN.into(), i16::MAX.into()),
        "i32" => whole(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => whole(i64::MIN.into(), i64::MAX.into()),
        "u128" | "i128" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::in_contract_words;

    #[test]
    fn serde_words_for_rust_types_become_the_contract_s() {
        for (serde, words) in [
            (
                "invalid type: string \"x\", expected struct RawCustomer at line 1 column 40",
                "invalid type: string \"x\", expected an object at line 1 column 40",
            ),
            (
                "invalid type: map, expected a sequence",
                "invalid type: an object, expected an array",
            ),
            (
                "invalid type: integer `5`, expected internally tagged enum Body",
                "invalid type: integer `5`, expected an object",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
            ),
            (
                "unknown variant `mail`, expected one of `phone`, `email`",
                "unknown value `mail`, expected one of `phone`, `email`",
            ),
            (
                "data did not match any variant of untagged enum Payload",
                "the value matches none of the shapes accepted here",
            ),
            (
                "invalid type: unit value, expected struct variant Body::Queued",
                "invalid type: null, expected an object",
            ),
            ("missing field `queue`", "missing field `queue`"),
        ] {
            assert_eq!(in_contract_words(serde), words);
        }
    }

    #[test]
    fn what_the_client_sent_is_left_as_it_was() {
        let serde = "invalid type: string \"map, expected struct X\", expected a string";
        assert_eq!(in_contract_words(serde), serde);
    }
}
