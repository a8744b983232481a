//! The OCSP responder (RFC 6960, with the RFC 5019 / RFC 9919 profile and RFC 9654 nonces).
//!
//! Requests with one CertID and no nonce are answered from a cache of pre-signed responses,
//! re-signed at half their validity and dropped on any status change. A nonce, or several
//! CertIDs, get a freshly signed response. Anything that does not parse gets
//! `malformedRequest`; a CertID for an issuer this responder does not serve gets `unauthorized`.
//!
//! CertIDs are normalised before anything else: the hash algorithm's parameters must be absent
//! or NULL, and the serial a minimal, non-negative INTEGER (anything else is
//! `malformedRequest`). Responses carry Herald's own canonical CertID (hash algorithm with NULL
//! parameters, the issuer's hashes, the minimal serial), never the requester's bytes, and the
//! pre-signed cache is keyed on (hash algorithm, serial), so a later client always receives a
//! response that matches its own request.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use rcgen::{KeyPair, SigningKey};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

use crate::core::metrics::Metrics;
use crate::model::revocation::Reason;
use crate::model::serial::Serial;
use crate::store::{CertRecord, StoreError};

const SHA1: &str = "1.3.14.3.2.26";
const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const NONCE: &str = "1.3.6.1.5.5.7.48.1.2";

/// Most CertIDs accepted in one request.
pub const MAX_CERT_IDS: usize = 16;
/// Largest request accepted, in bytes.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most pre-signed responses kept (about 600 bytes each); beyond, responses are signed on
/// request until the cache is refreshed.
pub(crate) const MAX_CACHED_RESPONSES: usize = 200_000;
/// Longest nonce accepted (RFC 9654: 1 to 32 octets).
pub(crate) const MAX_NONCE_BYTES: usize = 32;

/// The CertID hashes that identify the issuing CA.
#[derive(Debug, Clone)]
pub struct IssuerIds {
    sha1_name: Vec<u8>,
    sha1_key: Vec<u8>,
    sha256_name: Vec<u8>,
    sha256_key: Vec<u8>,
}

impl IssuerIds {
    /// From the issuer's certificate: hashes of its subject name DER and its public key bits.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, der::Error> {
        let cert = x509_cert::Certificate::from_der(der)?;
        let name = cert.tbs_certificate.subject.to_der()?;
        let key = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let h = |alg, data: &[u8]| ring::digest::digest(alg, data).as_ref().to_vec();
        Ok(Self {
            sha1_name: h(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &name),
            sha1_key: h(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &key),
            sha256_name: h(&ring::digest::SHA256, &name),
            sha256_key: h(&ring::digest::SHA256, &key),
        })
    }

    /// The canonical CertID of `serial` under `alg`: the hash algorithm with NULL parameters,
    /// this issuer's name and key hashes, and the serial's minimal encoding.
    fn canonical_cert_id(&self, alg: HashAlg, serial: &Serial) -> Result<CertId, Refusal> {
        let (oid, name, key) = match alg {
            HashAlg::Sha1 => (SHA1, &self.sha1_name, &self.sha1_key),
            HashAlg::Sha256 => (SHA256, &self.sha256_name, &self.sha256_key),
        };
        let internal = |_| Refusal::Internal;
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new(oid).map_err(|_| Refusal::Internal)?,
                parameters: Some(der::asn1::Any::null()),
            },
            issuer_name_hash: OctetString::new(name.clone()).map_err(internal)?,
            issuer_key_hash: OctetString::new(key.clone()).map_err(internal)?,
            serial_number: x509_cert::serial_number::SerialNumber::new(serial.as_bytes())
                // A serial that does not fit a certificate was never issued.
                .map_err(|_| Refusal::Malformed)?,
        })
    }

    /// Which hash algorithm the CertID uses, if it names this issuer.
    fn matches(&self, id: &CertId) -> Option<HashAlg> {
        let (alg, name, key) = match id.hash_algorithm.oid.to_string().as_str() {
            SHA1 => (HashAlg::Sha1, &self.sha1_name, &self.sha1_key),
            SHA256 => (HashAlg::Sha256, &self.sha256_name, &self.sha256_key),
            _ => return None,
        };
        (id.issuer_name_hash.as_bytes() == name.as_slice()
            && id.issuer_key_hash.as_bytes() == key.as_slice())
        .then_some(alg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum HashAlg {
    Sha1,
    Sha256,
}

/// Caching facts of a pre-signed response, for HTTP headers.
#[derive(Debug, Clone)]
pub struct CacheInfo {
    /// Strong ETag, quoted.
    pub etag: String,
    /// thisUpdate (Last-Modified), Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds (Expires; max-age counts down to it).
    pub next_update: i64,
}

/// An OCSP response ready to send.
#[derive(Debug, Clone)]
pub struct OcspAnswer {
    /// The OCSPResponse, DER.
    pub der: Arc<[u8]>,
    /// Present for a successful response without nonce (cacheable by HTTP caches).
    pub cache: Option<CacheInfo>,
}

#[derive(Debug)]
struct Cached {
    answer: OcspAnswer,
    refresh_at: i64,
    /// The response's nextUpdate: until then it may still be served when the store cannot
    /// be read (database unreachable), though it is past `refresh_at`.
    next_update: i64,
}

/// Signs OCSP responses with the delegated OCSP signer and keeps the pre-signed cache.
pub struct OcspResponder {
    key: KeyPair,
    cert: x509_cert::Certificate,
    key_hash: Vec<u8>,
    signature_algorithm: AlgorithmIdentifierOwned,
    issuer: IssuerIds,
    validity_secs: i64,
    cache: RwLock<HashMap<(HashAlg, Serial), Arc<Cached>>>,
    /// Bumped by [`OcspResponder::clear`]: a response whose status was looked up before a
    /// clear (that is, possibly before a revocation) is answered but not cached.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for OcspResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder").finish_non_exhaustive()
    }
}

/// Why the responder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OcspSetupError {
    /// The signer certificate does not parse.
    #[error("OCSP signer certificate: {0}")]
    Cert(#[from] der::Error),
    /// The key type has no OCSP signature algorithm here.
    #[error("unsupported OCSP signer key algorithm")]
    KeyAlgorithm,
}

impl OcspResponder {
    /// A responder signing with `key` (whose certificate is `cert_der`) for the issuer `issuer`.
    pub fn new(
        key: KeyPair,
        cert_der: &[u8],
        issuer: IssuerIds,
        validity_secs: i64,
    ) -> Result<Self, OcspSetupError> {
        let cert = x509_cert::Certificate::from_der(cert_der)?;
        let key_bits = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let key_hash = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key_bits)
            .as_ref()
            .to_vec();
        let oid = if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
            const_oid::db::rfc5912::ECDSA_WITH_SHA_256
        } else if key.algorithm() == &rcgen::PKCS_ED25519 {
            const_oid::db::rfc8410::ID_ED_25519
        } else {
            return Err(OcspSetupError::KeyAlgorithm);
        };
        Ok(Self {
            key,
            cert,
            key_hash,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
            issuer,
            validity_secs,
            cache: RwLock::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// notAfter of the signer's certificate, Unix seconds.
    pub fn signer_not_after(&self) -> i64 {
        self.cert
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs() as i64
    }

    /// How many pre-signed responses the cache holds.
    pub fn cached_responses(&self) -> usize {
        self.cache.read().map(|cache| cache.len()).unwrap_or(0)
    }

    /// Drops the cached responses of one certificate (its status changed).
    pub fn invalidate(&self, serial: &Serial) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(&(HashAlg::Sha1, serial.clone()));
            cache.remove(&(HashAlg::Sha256, serial.clone()));
        }
    }

    /// Drops every cached response.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }

    /// Answers a DER OCSP request. `lookup` finds a certificate by serial.
    pub fn respond(
        &self,
        request: &[u8],
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
        metrics: &Metrics,
    ) -> OcspAnswer {
        match self.try_respond(request, lookup, metrics) {
            Ok(answer) => answer,
            Err(status) => {
                metrics.ocsp_refused.fetch_add(1, Ordering::Relaxed);
                let response = match status {
                    Refusal::Malformed => OcspResponse::malformed_request(),
                    Refusal::Unauthorized => OcspResponse::unauthorized(),
                    Refusal::Internal => OcspResponse::internal_error(),
                };
                // An error OCSPResponse is five fixed bytes; encoding cannot fail.
                let der = response
                    .to_der()
                    .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, 0x02]);
                OcspAnswer {
                    der: der.into(),
                    cache: None,
                }
            }
        }
    }

    fn try_respond(
        &self,
        request: &[u8],
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
        metrics: &Metrics,
    ) -> Result<OcspAnswer, Refusal> {
        let parsed = parse_request(request)?;
        let nonce = parsed.nonce;
        let mut ids = Vec::with_capacity(parsed.cert_ids.len());
        for cert_id in &parsed.cert_ids {
            let alg = self.issuer.matches(cert_id).ok_or(Refusal::Unauthorized)?;
            let serial = request_serial(cert_id)?;
            // Answered with our own encoding of the CertID, never the requester's bytes.
            let canonical = self.issuer.canonical_cert_id(alg, &serial)?;
            ids.push((alg, serial, canonical));
        }
        let now = crate::model::time::now_unix();
        if let ([(alg, serial, cert_id)], None) = (ids.as_slice(), &nonce) {
            let key = (*alg, serial.clone());
            let cached = self.cache.read().ok().and_then(|c| c.get(&key).cloned());
            if let Some(hit) = cached.as_ref().filter(|c| now < c.refresh_at) {
                metrics.ocsp_cached.fetch_add(1, Ordering::Relaxed);
                return Ok(hit.answer.clone());
            }
            let generation = self.generation.load(Ordering::SeqCst);
            let single = match self.single_response(cert_id, serial, lookup, now) {
                Ok(single) => single,
                // The store cannot be read: a cached response not yet past its nextUpdate is
                // still a valid answer.
                Err(Refusal::Internal) => match cached.filter(|c| now < c.next_update) {
                    Some(stale) => {
                        metrics.ocsp_cached.fetch_add(1, Ordering::Relaxed);
                        return Ok(stale.answer.clone());
                    }
                    None => return Err(Refusal::Internal),
                },
                Err(other) => return Err(other),
            };
            let known = !matches!(single.cert_status, CertStatus::Unknown(_));
            let answer = self.sign(vec![single], None, now, true)?;
            metrics.ocsp_signed.fetch_add(1, Ordering::Relaxed);
            // Responses for serials never issued are not cached: a client cannot fill memory.
            if known {
                // Taking the lock after a concurrent `clear` bumped the generation means the
                // status may predate a revocation: not cached.
                if let Ok(mut cache) = self.cache.write() {
                    if self.generation.load(Ordering::SeqCst) != generation {
                        return Ok(answer);
                    }
                    if cache.len() >= MAX_CACHED_RESPONSES {
                        // Stale entries go first; if all are fresh, start over.
                        cache.retain(|_, c| now < c.refresh_at);
                        if cache.len() >= MAX_CACHED_RESPONSES {
                            cache.clear();
                        }
                    }
                    cache.insert(
                        key,
                        Arc::new(Cached {
                            answer: answer.clone(),
                            refresh_at: now + self.validity_secs / 2,
                            next_update: now + self.validity_secs,
                        }),
                    );
                }
            }
            return Ok(answer);
        }
        let singles = ids
            .iter()
            .map(|(_, serial, cert_id)| self.single_response(cert_id, serial, lookup, now))
            .collect::<Result<Vec<_>, _>>()?;
        metrics.ocsp_signed.fetch_add(1, Ordering::Relaxed);
        self.sign(singles, nonce, now, false)
    }

    fn single_response(
        &self,
        cert_id: &CertId,
        serial: &Serial,
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
        now: i64,
    ) -> Result<SingleResponse, Refusal> {
        let record = lookup(serial).map_err(|e| {
            tracing::error!(error = %e, "OCSP status lookup failed");
            Refusal::Internal
        })?;
        let cert_status = match record {
            None => CertStatus::unknown(),
            Some(CertRecord {
                revocation: Some(rev),
                ..
            }) => CertStatus::revoked(RevokedInfo {
                revocation_time: gtime(rev.revoked_at)?,
                revocation_reason: Some(crl_reason(rev.reason)),
            }),
            Some(_) => CertStatus::good(),
        };
        Ok(SingleResponse {
            cert_id: cert_id.clone(),
            cert_status,
            this_update: gtime(now)?,
            next_update: Some(gtime(now + self.validity_secs)?),
            single_extensions: None,
        })
    }

    /// The pre-signing lint: a ResponseData its profile refuses is not signed; the client
    /// gets `internalError` and the log says why.
    fn lint(&self, tbs: &[u8]) -> Result<(), Refusal> {
        let validity = &self.cert.tbs_certificate.validity;
        let expect = crate::core::lint::OcspExpectation {
            responder_key_hash: &self.key_hash,
            signer_validity: (
                validity.not_before.to_unix_duration().as_secs(),
                validity.not_after.to_unix_duration().as_secs(),
            ),
        };
        crate::core::lint::ocsp_response(tbs, &expect).map_err(|refusal| {
            tracing::error!(%refusal, "OCSP response not signed");
            Refusal::Internal
        })
    }

    fn sign(
        &self,
        responses: Vec<SingleResponse>,
        nonce: Option<Extension>,
        now: i64,
        cacheable: bool,
    ) -> Result<OcspAnswer, Refusal> {
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(self.key_hash.clone()).map_err(|_| Refusal::Internal)?,
            ),
            produced_at: gtime(now)?,
            responses,
            response_extensions: nonce.map(|n| vec![n]),
        };
        let tbs = data.to_der().map_err(|_| Refusal::Internal)?;
        self.lint(&tbs)?;
        let signature = self.key.sign(&tbs).map_err(|_| Refusal::Internal)?;
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: self.signature_algorithm.clone(),
            signature: BitString::from_bytes(&signature).map_err(|_| Refusal::Internal)?,
            certs: Some(vec![self.cert.clone()]),
        };
        let der = OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(|_| Refusal::Internal)?;
        let cache = cacheable.then(|| CacheInfo {
            etag: format!(
                "\"{}\"",
                hex::encode(
                    ring::digest::digest(&ring::digest::SHA256, &der)
                        .as_ref()
                        .get(..16)
                        .unwrap_or_default()
                )
            ),
            this_update: now,
            next_update: now + self.validity_secs,
        });
        Ok(OcspAnswer {
            der: der.into(),
            cache,
        })
    }
}

/// Why a request gets an OCSP error status instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `malformedRequest`: not a valid OCSPRequest, no or too many CertIDs, bad nonce.
    Malformed,
    /// `unauthorized`: a CertID names an issuer this responder does not serve.
    Unauthorized,
    /// `internalError`.
    Internal,
}

/// A syntactically valid OCSP request.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    /// The CertIDs asked about (1 to [`MAX_CERT_IDS`]).
    pub cert_ids: Vec<CertId>,
    /// The nonce extension to echo, if any.
    pub nonce: Option<Extension>,
}

/// The serial of a CertID: a minimal, non-negative INTEGER (a negative serial is never one this
/// CA issued, even when its bytes equal an issued serial's), else `malformedRequest`.
fn request_serial(cert_id: &CertId) -> Result<Serial, Refusal> {
    // The DER content bytes, two's complement. The decoder already refuses most non-minimal
    // encodings; this checks again, independent of it.
    match cert_id.serial_number.as_bytes() {
        [] => Err(Refusal::Malformed),
        [first, ..] if first & 0x80 != 0 => Err(Refusal::Malformed),
        [0x00, second, ..] if second & 0x80 == 0 => Err(Refusal::Malformed),
        bytes => Ok(Serial::from_der_integer(bytes)),
    }
}

/// True when an AlgorithmIdentifier's parameters are absent or NULL, as RFC 5754 and RFC 3370
/// allow for SHA-1 and SHA-2.
fn absent_or_null(params: Option<&der::asn1::Any>) -> bool {
    params.is_none_or(|p| der::Tagged::tag(p) == der::Tag::Null && p.value().is_empty())
}

/// Parses a DER OCSPRequest and checks its bounds (size, number of CertIDs, nonce length).
pub fn parse_request(request: &[u8]) -> Result<ParsedRequest, Refusal> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err(Refusal::Malformed);
    }
    let req = OcspRequest::from_der(request).map_err(|_| Refusal::Malformed)?;
    let list = &req.tbs_request.request_list;
    if list.is_empty() || list.len() > MAX_CERT_IDS {
        return Err(Refusal::Malformed);
    }
    if list
        .iter()
        .any(|r| !absent_or_null(r.req_cert.hash_algorithm.parameters.as_ref()))
    {
        return Err(Refusal::Malformed);
    }
    let nonce = request_nonce(&req)?;
    Ok(ParsedRequest {
        cert_ids: list.iter().map(|r| r.req_cert.clone()).collect(),
        nonce,
    })
}

fn request_nonce(req: &OcspRequest) -> Result<Option<Extension>, Refusal> {
    let Some(exts) = &req.tbs_request.request_extensions else {
        return Ok(None);
    };
    let Some(ext) = exts.iter().find(|e| e.extn_id.to_string() == NONCE) else {
        return Ok(None);
    };
    // RFC 9654: the value is an OCTET STRING of 1 to 32 octets. Some clients (older OpenSSL)
    // send the raw bytes without the inner OCTET STRING; accept both, echo what was sent.
    let value = ext.extn_value.as_bytes();
    let inner_len = OctetString::from_der(value).map_or(value.len(), |o| o.as_bytes().len());
    if inner_len == 0 || inner_len > MAX_NONCE_BYTES {
        return Err(Refusal::Malformed);
    }
    Ok(Some(Extension {
        extn_id: ext.extn_id,
        critical: false,
        extn_value: ext.extn_value.clone(),
    }))
}

fn gtime(unix: i64) -> Result<OcspGeneralizedTime, Refusal> {
    let secs = u64::try_from(unix).map_err(|_| Refusal::Internal)?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(OcspGeneralizedTime)
        .map_err(|_| Refusal::Internal)
}

fn crl_reason(reason: Reason) -> CrlReason {
    match reason {
        Reason::Unspecified => CrlReason::Unspecified,
        Reason::KeyCompromise => CrlReason::KeyCompromise,
        Reason::CaCompromise => CrlReason::CaCompromise,
        Reason::AffiliationChanged => CrlReason::AffiliationChanged,
        Reason::Superseded => CrlReason::Superseded,
        Reason::CessationOfOperation => CrlReason::CessationOfOperation,
        Reason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        Reason::AaCompromise => CrlReason::AaCompromise,
    }
}

/// Decodes the GET form of a request: the path after `/ocsp/`, percent-decoded, then base64
/// (standard alphabet, padding optional; the URL-safe alphabet is accepted too). Robust to `/`,
/// `+` and `=` in the path whether or not the client percent-encoded them.
pub fn decode_get_path(path: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let decoded = percent_decode(path)?;
    let text: String = decoded.chars().filter(|c| !c.is_whitespace()).collect();
    let text = text.trim_start_matches('/');
    let standard = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let url_safe = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .ok()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn get_path_decoding_handles_slashes_plus_and_padding() {
        use base64::Engine;
        // Bytes chosen so that base64 contains '+', '/' and '=' padding.
        let raw = vec![0xfb, 0xff, 0xfe, 0x3e, 0x3f];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(b64.contains('+') && b64.contains('/') && b64.ends_with('='));
        assert_eq!(decode_get_path(&b64).unwrap(), raw);
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(decode_get_path(&encoded).unwrap(), raw);
        assert_eq!(decode_get_path(b64.trim_end_matches('=')).unwrap(), raw);
        assert!(decode_get_path("%zz").is_none());
        assert!(decode_get_path("!!!").is_none());
    }
}
