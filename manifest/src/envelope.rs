//! Signed envelopes: `{"signed": ..., "signatures": [...]}`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::canonical::{to_canonical_bytes, write_canonical, CanonicalError};
use crate::keys::{KeyError, KeyId, Signer};

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signing key's ID.
    pub keyid: KeyId,
    /// The signature, in hex.
    pub sig: String,
}

/// Why bytes are not a well-formed envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON of the wrong shape.
    #[error("not a signed envelope: {0}")]
    Shape(&'static str),
    /// The signed part has no canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// A signer failed.
    #[error("signing failed: {0}")]
    Sign(#[from] KeyError),
}

/// A signed metadata document: the generic JSON value of its `signed` part, kept exactly as
/// read, and its signatures.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    signed: Value,
    signatures: Vec<Signature>,
}

impl Envelope {
    /// Parses an envelope.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_slice(bytes)?;
        let Value::Object(mut map) = value else {
            return Err(EnvelopeError::Shape("top level is not an object"));
        };
        let signed = map
            .remove("signed")
            .ok_or(EnvelopeError::Shape("no `signed` member"))?;
        if !signed.is_object() {
            return Err(EnvelopeError::Shape("`signed` is not an object"));
        }
        let signatures = map
            .remove("signatures")
            .ok_or(EnvelopeError::Shape("no `signatures` member"))?;
        let signatures: Vec<Signature> = serde_json::from_value(signatures)
            .map_err(|_| EnvelopeError::Shape("`signatures` is not a list of {keyid, sig}"))?;
        Ok(Envelope { signed, signatures })
    }

    /// An unsigned envelope around `signed`.
    pub fn new(signed: Value) -> Self {
        Envelope {
            signed,
            signatures: Vec::new(),
        }
    }

    /// An unsigned envelope around a typed view.
    pub fn from_typed<T: Serialize>(signed: &T) -> Result<Self, EnvelopeError> {
        Ok(Envelope::new(serde_json::to_value(signed)?))
    }

    /// The generic `signed` value.
    pub fn signed(&self) -> &Value {
        &self.signed
    }

    /// Takes the generic `signed` value out of the envelope.
    pub fn into_signed(self) -> Value {
        self.signed
    }

    /// The signatures, as listed.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The bytes signatures are computed over: canonical JSON of `signed`.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        to_canonical_bytes(&self.signed)
    }

    /// Adds (or replaces) the signature of `signer`. Signatures stay sorted by key ID so the
    /// output is deterministic.
    pub fn sign(&mut self, signer: &dyn Signer) -> Result<(), EnvelopeError> {
        let bytes = self.signed_bytes()?;
        let sig = signer.sign(&bytes)?;
        let keyid = signer.key_id().clone();
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(Signature {
            keyid,
            sig: hex::encode(sig),
        });
        self.signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
        Ok(())
    }

    /// The whole envelope as canonical JSON, the form Herald writes to disk.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        envelope_canonical_bytes(&self.signatures, &to_canonical_bytes(&self.signed)?)
    }

    /// The `_type` member of `signed`, if a string.
    pub fn role_type(&self) -> Option<&str> {
        self.signed.get("_type").and_then(Value::as_str)
    }

    /// The `version` member of `signed`, if an integer.
    pub fn version(&self) -> Option<u64> {
        self.signed.get("version").and_then(Value::as_u64)
    }
}

/// Signs the canonical bytes of a `signed` part with every signer, returning the signatures
/// sorted by key ID. For large metadata built straight into canonical bytes, without a JSON
/// tree (see [`envelope_canonical_bytes`]).
pub fn sign_canonical(
    signed_canonical: &[u8],
    signers: &[&dyn Signer],
) -> Result<Vec<Signature>, KeyError> {
    let mut sigs = signers
        .iter()
        .map(|s| {
            Ok(Signature {
                keyid: s.key_id().clone(),
                sig: hex::encode(s.sign(signed_canonical)?),
            })
        })
        .collect::<Result<Vec<_>, KeyError>>()?;
    sigs.sort_by(|a, b| a.keyid.cmp(&b.keyid));
    sigs.dedup_by(|a, b| a.keyid == b.keyid);
    Ok(sigs)
}

/// The canonical JSON of an envelope, from its signatures and the canonical bytes of its
/// `signed` part (members in canonical order: `signatures` before `signed`).
pub fn envelope_canonical_bytes(
    signatures: &[Signature],
    signed_canonical: &[u8],
) -> Result<Vec<u8>, CanonicalError> {
    let signatures = json!(signatures);
    let mut out = Vec::with_capacity(signed_canonical.len() + 256);
    out.extend_from_slice(b"{\"signatures\":");
    write_canonical(&signatures, &mut out)?;
    out.extend_from_slice(b",\"signed\":");
    out.extend_from_slice(signed_canonical);
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn malformed_envelope_rejected() {
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"signed\":1,\"signatures\":[]}",
            b"{\"signed\":{},\"signatures\":{}}",
            b"{\"signed\":{},\"signatures\":[{\"keyid\":1}]}",
            b"not json",
        ] {
            assert!(Envelope::from_slice(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn envelope_written_in_canonical_form() {
        let mut env = Envelope::new(json!({"b": 1, "a": "x"}));
        env.signatures.push(Signature {
            keyid: KeyId::new("k"),
            sig: "00".into(),
        });
        let bytes = env.to_canonical_bytes().unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_canonical_bytes(&value).unwrap(), bytes);
    }

    #[test]
    fn unknown_fields_preserved() {
        let bytes = br#"{"signed":{"_type":"x","z-extra":{"k":[1,2]}},"signatures":[]}"#;
        let env = Envelope::from_slice(bytes).unwrap();
        assert_eq!(env.signed()["z-extra"]["k"][1], 2);
        assert_eq!(
            env.signed_bytes().unwrap(),
            br#"{"_type":"x","z-extra":{"k":[1,2]}}"#
        );
    }
}
