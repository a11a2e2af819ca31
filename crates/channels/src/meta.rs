//! What Meta's webhooks (Messenger Platform, WhatsApp Cloud API) share beyond their
//! signature: the subscription handshake.
//!
//! Before Meta delivers anything it calls the webhook URL once with
//! `GET ?hub.mode=subscribe&hub.verify_token=TOKEN&hub.challenge=N` and expects `N` back
//! when `TOKEN` is the one configured in the app dashboard. [`verify_subscription`] is
//! that check, for whichever HTTP layer routes the `GET`.

use crate::ChannelError;

/// Checks a webhook's `object`: each of Meta's webhook URLs receives one object type
/// (`page` for Messenger, `instagram`, `whatsapp_business_account`).
pub fn expect_object(object: &str, expected: &str, platform: &str) -> Result<(), ChannelError> {
    if object == expected {
        return Ok(());
    }
    Err(ChannelError::malformed(
        "object",
        format!("{object:?} is not {platform} webhook (object {expected:?})"),
    ))
}

/// Answers Meta's subscription handshake: the challenge to echo when the query's mode is
/// `subscribe` and its verify token is `verify_token`.
pub fn verify_subscription(query: &str, verify_token: &str) -> Result<String, ChannelError> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ChannelError::malformed("query", format!("not a query string: {e}")))?;
    let get = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match get("hub.mode") {
        Some("subscribe") => {}
        Some(other) => {
            return Err(ChannelError::malformed(
                "hub.mode",
                format!("{other:?} is not subscribe"),
            ));
        }
        None => return Err(ChannelError::missing("hub.mode")),
    }
    let given = get("hub.verify_token").ok_or_else(|| ChannelError::missing("hub.verify_token"))?;
    if !same_secret(given.as_bytes(), verify_token.as_bytes()) {
        return Err(ChannelError::BadSignature(
            "hub.verify_token does not match".to_owned(),
        ));
    }
    get("hub.challenge")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ChannelError::missing("hub.challenge"))
}

/// Compares two secrets in time that depends only on their lengths, so the answer time
/// does not reveal how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_echoes_the_challenge_for_the_right_token() {
        let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
        assert_eq!(
            verify_subscription(query, "meatyhamhock").unwrap(),
            "1158201444"
        );
        assert!(matches!(
            verify_subscription(query, "other"),
            Err(ChannelError::BadSignature(_))
        ));
        let wrong_mode = query.replace("subscribe", "unsubscribe");
        assert!(matches!(
            verify_subscription(&wrong_mode, "meatyhamhock"),
            Err(ChannelError::Malformed { field, .. }) if field == "hub.mode"
        ));
        assert!(
            verify_subscription(
                "hub.mode=subscribe&hub.verify_token=meatyhamhock",
                "meatyhamhock"
            )
            .is_err()
        );
    }
}
