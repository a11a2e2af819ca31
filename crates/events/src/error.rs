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
            message: error.into_inner().to_string(),
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
