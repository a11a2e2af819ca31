//! The identity rules of CONTRACT §3–4 that need no state: handle normalisation and
//! the deterministic ids (uuid v5) of events and of customers first seen by a handle.
//!
//! Everything here is a pure function of its input, so a replayed or re-sent history
//! produces the same ids.

use uuid::Uuid;

use crate::model::Handle;

/// The uuid v5 namespace of every id omnilog derives. Fixed forever: changing it would
/// give a re-sent webhook a new event id and a known customer a new customer id.
pub const OMNILOG_NAMESPACE: Uuid = Uuid::from_u128(0x5b1e_9c0c_0a6e_4b8e_9d4f_6f6d_6e69_6c6f);

/// uuid v5 of `name` in [`OMNILOG_NAMESPACE`]: what `Uuid::new_v5` gives, with SHA-1 from
/// the `sha1` crate, which uses the processor's SHA instructions where it has them. The
/// `uuid` crate's own SHA-1 (`sha1_smol`) is portable code: about 3,000 instructions for a
/// journey id, whose 30,075 ids were 3.4 % of the journey worker's instructions in
/// `valgrind --tool=callgrind --separate-threads=yes omnilog replay` of 1M events.
pub fn omnilog_uuid(name: &[u8]) -> Uuid {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(OMNILOG_NAMESPACE.as_bytes());
    hasher.update(name);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The longest handle kind, in bytes once trimmed.
pub const MAX_HANDLE_KIND_BYTES: usize = 64;

/// The longest handle value, in bytes once trimmed. An email address has at most 254, a
/// phone number in E.164 16; the platforms' user and device ids are far shorter than this.
/// Every handle ingest sees is held by the identity view for as long as the history (in
/// memory, where the server resolves), so an unbounded value would let one request grow
/// every server's memory by the 8 MiB a request body may take.
pub const MAX_HANDLE_VALUE_BYTES: usize = 512;

/// The longest customer id, in bytes once trimmed (ids are held as handles are).
pub const MAX_CUSTOMER_ID_BYTES: usize = 256;

/// Why a handle could not be normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandleProblem {
    EmptyKind,
    EmptyValue,
    /// A kind longer than [`MAX_HANDLE_KIND_BYTES`].
    KindTooLong,
    /// A value longer than [`MAX_HANDLE_VALUE_BYTES`].
    ValueTooLong,
    /// A phone handle without a single digit.
    NoDigits,
    /// An email handle without an `@`.
    NotAnEmail,
}

impl std::fmt::Display for HandleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandleProblem::EmptyKind => f.write_str("kind is empty"),
            HandleProblem::EmptyValue => f.write_str("value is empty"),
            HandleProblem::KindTooLong => {
                write!(f, "kind is longer than {MAX_HANDLE_KIND_BYTES} bytes")
            }
            HandleProblem::ValueTooLong => write!(
                f,
                "value is longer than {MAX_HANDLE_VALUE_BYTES} bytes once normalised"
            ),
            HandleProblem::NoDigits => f.write_str("a phone handle needs digits"),
            HandleProblem::NotAnEmail => f.write_str("an email handle needs an @"),
        }
    }
}

/// Normalises a handle: the kind lower-cased and trimmed; an email lower-cased and trimmed;
/// a phone reduced to `+digits`; any other value trimmed.
pub fn normalise_handle(kind: &str, value: &str) -> Result<Handle, HandleProblem> {
    let kind = crate::text_rules::trimmed(kind);
    if kind.is_empty() {
        return Err(HandleProblem::EmptyKind);
    }
    if kind.len() > MAX_HANDLE_KIND_BYTES {
        return Err(HandleProblem::KindTooLong);
    }
    let kind = kind.to_ascii_lowercase();
    let trimmed = crate::text_rules::trimmed(value);
    if trimmed.is_empty() {
        return Err(HandleProblem::EmptyValue);
    }
    let value = match kind.as_str() {
        "email" => {
            if !trimmed.contains('@') {
                return Err(HandleProblem::NotAnEmail);
            }
            if trimmed.is_ascii() {
                trimmed.to_ascii_lowercase()
            } else {
                trimmed.to_lowercase()
            }
        }
        "phone" => {
            // One string, built in place (a handle on most events: ingest normalises
            // every one it reads).
            let mut value = String::with_capacity(trimmed.len() + 1);
            value.push('+');
            value.extend(trimmed.chars().filter(char::is_ascii_digit));
            if value.len() == 1 {
                return Err(HandleProblem::NoDigits);
            }
            value
        }
        _ => trimmed.to_owned(),
    };
    // The value as stored is what is held, and checking it (not what was given) gives a
    // normalised handle the same answer again: lower-casing can lengthen a value (`İ`, 2
    // bytes, is `i̇`, 3) and a phone number gains its `+`.
    if value.len() > MAX_HANDLE_VALUE_BYTES {
        return Err(HandleProblem::ValueTooLong);
    }
    Ok(Handle { kind, value })
}

/// The id of a customer first seen by `handle`: uuid v5 of `kind:value`.
pub fn customer_id_for_handle(handle: &Handle) -> String {
    let name = format!("{}:{}", handle.kind, handle.value);
    omnilog_uuid(name.as_bytes()).to_string()
}

/// The id of an event that came without one: uuid v5 of `source NUL source_event_id`
/// (NUL cannot be confused with a character of either part), so a redelivered webhook
/// is the same event.
pub fn event_id_for_source(source: Option<&str>, source_event_id: &str) -> Uuid {
    let mut name = Vec::with_capacity(source.map_or(0, str::len) + 1 + source_event_id.len());
    name.extend_from_slice(source.unwrap_or("").as_bytes());
    name.push(0);
    name.extend_from_slice(source_event_id.as_bytes());
    omnilog_uuid(&name)
}

/// The id of an event that names neither an id nor a source event id: uuid v5 of its
/// canonical content, so posting the same event twice still stores it once.
pub fn event_id_for_content(canonical_json: &str) -> Uuid {
    let mut name = Vec::with_capacity(8 + canonical_json.len());
    name.extend_from_slice(b"content\0");
    name.extend_from_slice(canonical_json.as_bytes());
    omnilog_uuid(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omnilog_uuid_is_the_uuid_crates_v5() {
        let long = "x".repeat(200);
        for name in ["", "a", "journey\0c-1\0i-1", "content\0{}", long.as_str()] {
            assert_eq!(
                omnilog_uuid(name.as_bytes()),
                Uuid::new_v5(&OMNILOG_NAMESPACE, name.as_bytes()),
                "{name:?}"
            );
        }
    }

    #[test]
    fn email_is_lower_cased_and_trimmed() {
        let handle = normalise_handle(" Email ", "  Alice@Example.COM ").unwrap();
        assert_eq!(handle, Handle::new("email", "alice@example.com"));
    }

    #[test]
    fn a_non_ascii_email_is_lower_cased_too() {
        let handle = normalise_handle("email", "ÉMILE@Exemple.FR").unwrap();
        assert_eq!(handle.value, "émile@exemple.fr");
    }

    #[test]
    fn phone_keeps_only_digits_after_a_plus() {
        let handle = normalise_handle("phone", "+1 (555) 123-0001").unwrap();
        assert_eq!(handle.value, "+15551230001");
        assert_eq!(
            normalise_handle("phone", "ext."),
            Err(HandleProblem::NoDigits)
        );
    }

    #[test]
    fn other_kinds_are_only_trimmed() {
        let handle = normalise_handle("messenger", " PSID-AbC ").unwrap();
        assert_eq!(handle, Handle::new("messenger", "PSID-AbC"));
        assert_eq!(
            normalise_handle("visitor", "  "),
            Err(HandleProblem::EmptyValue)
        );
        assert_eq!(normalise_handle(" ", "x"), Err(HandleProblem::EmptyKind));
        let longest = "x".repeat(MAX_HANDLE_VALUE_BYTES);
        assert_eq!(
            normalise_handle("visitor", &longest).unwrap().value,
            longest
        );
        assert_eq!(
            normalise_handle("visitor", &format!(" {longest}y ")),
            Err(HandleProblem::ValueTooLong)
        );
        // The limit is the stored value's: a phone number gains its `+`.
        let digits = "5".repeat(MAX_HANDLE_VALUE_BYTES - 1);
        let phone = normalise_handle("phone", &digits).unwrap();
        assert_eq!(phone.value.len(), MAX_HANDLE_VALUE_BYTES);
        assert_eq!(normalise_handle("phone", &phone.value), Ok(phone));
        assert_eq!(
            normalise_handle("phone", &format!("{digits}5")),
            Err(HandleProblem::ValueTooLong)
        );
        assert_eq!(
            normalise_handle(&"k".repeat(MAX_HANDLE_KIND_BYTES + 1), "x"),
            Err(HandleProblem::KindTooLong)
        );
    }

    #[test]
    fn customer_ids_are_deterministic_per_normalised_handle() {
        let a = normalise_handle("email", "Alice@Example.com").unwrap();
        let b = normalise_handle("email", "alice@example.com ").unwrap();
        assert_eq!(customer_id_for_handle(&a), customer_id_for_handle(&b));
        let other = normalise_handle("email", "bob@example.com").unwrap();
        assert_ne!(customer_id_for_handle(&a), customer_id_for_handle(&other));
        let id: Uuid = customer_id_for_handle(&a).parse().unwrap();
        assert_eq!(id.get_version_num(), 5);
    }

    #[test]
    fn event_ids_separate_source_from_source_event_id() {
        let a = event_id_for_source(Some("voice.twilio"), "CA1:completed");
        assert_eq!(
            a,
            event_id_for_source(Some("voice.twilio"), "CA1:completed")
        );
        assert_ne!(a, event_id_for_source(Some("voice.twilio"), "CA1:ringing"));
        assert_ne!(
            event_id_for_source(Some("ab"), "c"),
            event_id_for_source(Some("a"), "bc")
        );
    }
}
