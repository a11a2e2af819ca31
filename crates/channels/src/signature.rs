//! The platforms' webhook signatures, checked the platform's way when a secret is
//! configured for a channel. Comparisons are constant-time (through `hmac`'s verify).

use base64::Engine as _;
use hmac::{Hmac, Mac};

use crate::{ChannelError, WebhookRequest, form_fields};

/// How a platform signs its webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + the form fields
    /// sorted by name, each name immediately followed by its value)).
    Twilio,
    /// Meta (Messenger, WhatsApp): `X-Hub-Signature-256` = `sha256=` + hex(HMAC-SHA256(app
    /// secret, raw body)).
    Meta,
    /// X (Twitter) Account Activity webhooks: `X-Twitter-Webhooks-Signature` = `sha256=` +
    /// base64(HMAC-SHA256(consumer secret, raw body)). The same secret answers X's
    /// challenge-response check ([`crate::x::crc_response_token`]).
    X,
    /// Our own widgets and forms, and any platform without a scheme of its own:
    /// `X-Omnilog-Signature` = `sha256=` + hex(HMAC-SHA256(secret, raw body)).
    OmnilogHmac,
}

impl SignatureScheme {
    /// The header that carries the signature.
    pub fn header(self) -> &'static str {
        match self {
            SignatureScheme::Twilio => "x-twilio-signature",
            SignatureScheme::Meta => "x-hub-signature-256",
            SignatureScheme::X => "x-twitter-webhooks-signature",
            SignatureScheme::OmnilogHmac => "x-omnilog-signature",
        }
    }

    /// Checks the request's signature against `secret`.
    pub fn verify(self, request: &WebhookRequest, secret: &str) -> Result<(), ChannelError> {
        let header = self.header();
        let given = request
            .header(header)
            .ok_or_else(|| ChannelError::BadSignature(format!("{header} is missing")))?
            .trim();
        match self {
            SignatureScheme::Twilio => {
                let expected = base64::engine::general_purpose::STANDARD
                    .decode(given)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} is not base64")))?;
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|_| ChannelError::BadSignature("unusable secret".to_owned()))?;
                mac.update(twilio_signed_text(request)?.as_bytes());
                mac.verify_slice(&expected)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} does not match")))
            }
            SignatureScheme::Meta | SignatureScheme::OmnilogHmac => {
                let hex_digest = given.strip_prefix("sha256=").ok_or_else(|| {
                    ChannelError::BadSignature(format!("{header} must start with sha256="))
                })?;
                let expected = hex::decode(hex_digest)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} is not hex")))?;
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| ChannelError::BadSignature("unusable secret".to_owned()))?;
                mac.update(&request.body);
                mac.verify_slice(&expected)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} does not match")))
            }
            SignatureScheme::X => {
                let encoded = given.strip_prefix("sha256=").ok_or_else(|| {
                    ChannelError::BadSignature(format!("{header} must start with sha256="))
                })?;
                let expected = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} is not base64")))?;
                hmac_sha256(secret, &request.body)?
                    .verify_slice(&expected)
                    .map_err(|_| ChannelError::BadSignature(format!("{header} does not match")))
            }
        }
    }

    /// Signs a request the platform's way (for tests, the simulator and fixtures).
    pub fn sign(self, request: &WebhookRequest, secret: &str) -> Result<String, ChannelError> {
        Ok(match self {
            SignatureScheme::Twilio => {
                let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|_| ChannelError::BadSignature("unusable secret".to_owned()))?;
                mac.update(twilio_signed_text(request)?.as_bytes());
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            }
            SignatureScheme::Meta | SignatureScheme::OmnilogHmac => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| ChannelError::BadSignature("unusable secret".to_owned()))?;
                mac.update(&request.body);
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            }
            SignatureScheme::X => format!(
                "sha256={}",
                base64::engine::general_purpose::STANDARD
                    .encode(hmac_sha256(secret, &request.body)?.finalize().into_bytes())
            ),
        })
    }
}

/// An HMAC-SHA256 of `message` under `secret`, ready to finalise or verify.
pub(crate) fn hmac_sha256(
    secret: &str,
    message: &[u8],
) -> Result<Hmac<sha2::Sha256>, ChannelError> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| ChannelError::BadSignature("unusable secret".to_owned()))?;
    mac.update(message);
    Ok(mac)
}

/// What Twilio signs: the URL, then each POST field name and value, sorted by name.
fn twilio_signed_text(request: &WebhookRequest) -> Result<String, ChannelError> {
    let mut text = request.url.clone();
    let is_form = request
        .content_type
        .as_deref()
        .is_some_and(|c| c == "application/x-www-form-urlencoded");
    if is_form {
        for (name, value) in form_fields(&request.body)? {
            text.push_str(&name);
            text.push_str(&value);
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn request(content_type: &str, body: &str, headers: &[(&str, &str)]) -> WebhookRequest {
        WebhookRequest {
            url: "https://example.com/myapp".to_owned(),
            content_type: Some(content_type.to_owned()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            body: body.as_bytes().to_vec(),
            received_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn twilio_signature_matches_twilios_published_example() {
        // The vector of Twilio's request-validator tests: auth token 12345, this URL
        // (query string included), these form fields.
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
        let mut signed = request(
            "application/x-www-form-urlencoded",
            body,
            &[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
        );
        signed.url = "https://mycompany.com/myapp.php?foo=1&bar=2".to_owned();
        SignatureScheme::Twilio.verify(&signed, "12345").unwrap();
        assert!(SignatureScheme::Twilio.verify(&signed, "54321").is_err());
        signed.body = body.replace("1234&", "9999&").into_bytes();
        assert!(SignatureScheme::Twilio.verify(&signed, "12345").is_err());
    }

    #[test]
    fn meta_signature_is_hmac_sha256_of_the_body() {
        let mut signed = request("application/json", r#"{"object":"page"}"#, &[]);
        let signature = SignatureScheme::Meta.sign(&signed, "app-secret").unwrap();
        signed
            .headers
            .insert("x-hub-signature-256".to_owned(), signature);
        SignatureScheme::Meta.verify(&signed, "app-secret").unwrap();
        signed.body.push(b' ');
        assert!(matches!(
            SignatureScheme::Meta.verify(&signed, "app-secret"),
            Err(ChannelError::BadSignature(_))
        ));
    }

    #[test]
    fn x_signature_is_base64_hmac_sha256_of_the_body() {
        let body = r#"{"for_user_id":"2244994945"}"#;
        let mut signed = request("application/json", body, &[]);
        // Computed independently: the HMAC of the body under the consumer secret, base64.
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"consumer-secret").unwrap();
        mac.update(body.as_bytes());
        let expected = format!(
            "sha256={}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            SignatureScheme::X.sign(&signed, "consumer-secret").unwrap(),
            expected
        );
        signed
            .headers
            .insert("x-twitter-webhooks-signature".to_owned(), expected.clone());
        SignatureScheme::X
            .verify(&signed, "consumer-secret")
            .unwrap();
        assert!(SignatureScheme::X.verify(&signed, "other-secret").is_err());
        // Meta's hex form of the same digest is not X's form.
        let hex_form = SignatureScheme::Meta
            .sign(&signed, "consumer-secret")
            .unwrap();
        signed
            .headers
            .insert("x-twitter-webhooks-signature".to_owned(), hex_form);
        assert!(matches!(
            SignatureScheme::X.verify(&signed, "consumer-secret"),
            Err(ChannelError::BadSignature(_))
        ));
        signed.headers.clear();
        assert!(matches!(
            SignatureScheme::X.verify(&signed, "consumer-secret"),
            Err(ChannelError::BadSignature(why)) if why.contains("missing")
        ));
    }

    #[test]
    fn a_missing_signature_is_refused() {
        let unsigned = request("application/json", "{}", &[]);
        assert!(SignatureScheme::OmnilogHmac.verify(&unsigned, "s").is_err());
    }
}
