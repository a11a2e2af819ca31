//! Query strings read as a map of fields, each given at most once.
//!
//! axum's `Query<BTreeMap<..>>` keeps the last of a field given twice
//! (`?kind=phone&kind=email` reads as `email`), so what a client meant and what the
//! server answered could silently differ. Every route that reads a query takes
//! [`Params`] instead, which refuses a repeated field with a 400 problem naming it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::ApiError;

/// A request's query fields, each given once (an extractor).
#[derive(Clone, Debug, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        unique_fields(parts.uri.query().unwrap_or("")).map(Params)
    }
}

/// The fields of a query string (percent-decoded, `+` as a space, as a form is read),
/// refusing one given twice: a 400 whose `field` names it.
pub fn unique_fields(query: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut fields = BTreeMap::new();
    for (name, value) in form_pairs(query) {
        match fields.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(given) => {
                let name = given.key();
                return Err(ApiError::invalid(
                    name.clone(),
                    format!("the query gives {name:?} more than once; give each field once"),
                ));
            }
        }
    }
    Ok(fields)
}

/// The `name=value` pairs of a query string, in order, as `application/x-www-form-urlencoded`
/// reads them (what axum's `Query` read before): bytes that do not decode to UTF-8 become
/// U+FFFD, so a bad byte is a value the route refuses in its own words, not a crash.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    // serde_urlencoded into pairs of strings cannot fail: every part decodes, lossily.
    serde_urlencoded::from_str(query).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_given_twice_is_refused_naming_it() {
        for (query, field) in [
            ("kind=phone&kind=email", "kind"),
            ("group_by=a&group_by=b", "group_by"),
            ("from=x&to=y&from=x", "from"),
            ("a=1&b=2&%61=3", "a"),
        ] {
            match unique_fields(query) {
                Err(ApiError::Invalid {
                    field: Some(named),
                    detail,
                }) => {
                    assert_eq!(named, field, "{query}");
                    assert!(detail.contains("more than once"), "{detail}");
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn fields_given_once_are_read_as_a_form_is() {
        let fields = unique_fields("kind=phone&value=%2B1555+0001&empty=&bad=%ff").unwrap();
        assert_eq!(fields["kind"], "phone");
        assert_eq!(fields["value"], "+1555 0001");
        assert_eq!(fields["empty"], "");
        assert_eq!(fields["bad"], "\u{fffd}");
        assert!(unique_fields("").unwrap().is_empty());
    }
}
