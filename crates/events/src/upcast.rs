//! Schema evolution: upcasters turn an event written under an older `schema_version`
//! into the current shape on read, in the live path and in replay alike.
//!
//! Version 1 is the first and current version, so the registry is empty today; adding
//! version N+1 means bumping [`CURRENT_SCHEMA_VERSION`] and adding one function here
//! that rewrites a version-N JSON object in place.

use serde_json::{Map, Value};

use crate::error::EventError;
use crate::model::CURRENT_SCHEMA_VERSION;

/// An upcaster rewrites a JSON event of version `from` into version `from + 1`.
type Upcaster = fn(&mut Map<String, Value>) -> Result<(), EventError>;

/// The registry: `UPCASTERS[i]` turns version `i + 1` into `i + 2`.
const UPCASTERS: &[Upcaster] = &[];

/// Brings a JSON event to the current schema version, in place. An absent version means
/// current; a version newer than this build is an error (never guess at the future).
pub fn upcast_json(event: &mut Map<String, Value>) -> Result<(), EventError> {
    let version = match event.get("schema_version") {
        None | Some(Value::Null) => return Ok(()),
        Some(value) => value.as_u64().ok_or_else(|| {
            EventError::invalid("schema_version", format!("{value} is not a version number"))
        })?,
    };
    let current = u64::from(CURRENT_SCHEMA_VERSION);
    if version == 0 || version > current {
        return Err(EventError::invalid(
            "schema_version",
            format!("version {version} is not supported (this build reads 1..={current})"),
        ));
    }
    for upcaster in &UPCASTERS[(version - 1) as usize..] {
        upcaster(event)?;
    }
    event.insert("schema_version".to_owned(), Value::from(current));
    Ok(())
}

// Every version below the current one has exactly one upcaster.
const _: () = assert!(UPCASTERS.len() + 1 == CURRENT_SCHEMA_VERSION as usize);
