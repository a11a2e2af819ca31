//! Access control: bearer tokens, each with scopes (`ingest`, `read`, `metrics`, `admin`),
//! from the configuration. `admin` implies the others; `metrics` lets a scraper read
//! `/metrics` and nothing else. With no token configured every request is allowed: the
//! binary then refuses to listen anywhere but on loopback.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::http::{HeaderMap, header};

use crate::problem::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Write events (`POST /v1/events`, `POST /v1/channels/...`).
    Ingest,
    /// Query views.
    Read,
    /// Scrape `/metrics` (what a Prometheus server is given).
    Metrics,
    /// Operate views (rebuild) and everything else.
    Admin,
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "ingest" => Ok(Scope::Ingest),
            "read" => Ok(Scope::Read),
            "metrics" => Ok(Scope::Metrics),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?} (ingest, read, metrics, admin)"
            )),
        }
    }
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct AccessControl {
    tokens: BTreeMap<String, Vec<Scope>>,
}

impl AccessControl {
    /// No tokens: everything allowed (loopback only, enforced by the binary).
    pub fn open() -> Self {
        Self::default()
    }

    /// Adds a token with its scopes.
    pub fn with_token(mut self, token: impl Into<String>, scopes: Vec<Scope>) -> Self {
        self.tokens.insert(token.into(), scopes);
        self
    }

    /// Whether any token is configured.
    pub fn is_enforced(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the request's bearer token for `scope`.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        if !self.is_enforced() {
            return Ok(());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".to_owned()))?;
        let scopes = self
            .tokens
            .iter()
            .find(|(token, _)| constant_time_eq(token.as_bytes(), presented.as_bytes()))
            .map(|(_, scopes)| scopes)
            .ok_or_else(|| ApiError::Unauthorized("unknown bearer token".to_owned()))?;
        if scopes.contains(&scope) || scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token lacks the {scope:?} scope"
            )))
        }
    }
}

/// Compares without an early exit, so timing does not tell how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
