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
//! pre-signed cache is keyed on (serial, hash algorithm), so a later client always receives a
//! response that matches its own request.
//!
//! What each request costs: the request is read in place (the shape nearly every client sends
//! by a reader of that shape alone, anything else by borrowed types with the structure and
//! decoding rules of x509-ocsp's); the status of an issued certificate comes from the cache
//! beside its pre-signed responses (read from the store once, dropped with them on any status
//! change); a response is written as DER directly around the parts that never change, encoded
//! once at start with x509-ocsp's types (responder ID, CertID prefixes, signature algorithm,
//! the signer's certificate); the pre-signing lint reads the exact ResponseData bytes in place
//! too; then the key signs.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::{ID_PKIX_OCSP_BASIC, ID_PKIX_OCSP_NONCE};
use der::asn1::{AnyRef, GeneralizedTime, OctetString, OctetStringRef};
use der::{Decode, Encode};
use rcgen::{KeyPair, SigningKey};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::{Extension, Extensions};
use x509_ocsp::{
    CertId, OcspGeneralizedTime, OcspResponse, ResponderId, Signature as RequestSignature, Version,
};

use crate::core::lint::{take_der as take, CertIdRef, ExtensionRef};
use crate::core::metrics::Metrics;
use crate::model::serial::Serial;
use crate::store::{CertRecord, Revocation, StoreError};

/// Most CertIDs accepted in one request.
pub const MAX_CERT_IDS: usize = 16;
/// Largest request accepted, in bytes.
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most pre-signed responses kept (about 600 bytes each), and most certificates whose status
/// is kept; beyond, stale entries are dropped, then everything (and filled again on request).
pub(crate) const MAX_CACHED_RESPONSES: usize = 200_000;
/// Longest nonce accepted (RFC 9654: 1 to 32 octets).
pub(crate) const MAX_NONCE_BYTES: usize = 32;

/// DER tags written by the response encoder.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0]`, `[1]` and `[2]`, constructed (EXPLICIT tagging, and RevokedInfo's IMPLICIT `[1]`).
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;
const CONTEXT_2: u8 = 0xa2;
/// CertStatus `good` (`[0] IMPLICIT NULL`) and `unknown` (`[2] IMPLICIT NULL`).
const STATUS_GOOD: [u8; 2] = [0x80, 0x00];
const STATUS_UNKNOWN: [u8; 2] = [0x82, 0x00];
/// OCSPResponseStatus `successful`.
const SUCCESSFUL: [u8; 3] = [ENUMERATED, 0x01, 0x00];
/// Longest serial in a CertID we answer for, in INTEGER content octets (x509-cert's
/// `SerialNumber::MAX_LEN`, RFC 5280 §4.1.2.2).
const MAX_SERIAL_OCTETS: usize = 20;

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

    /// This issuer's name and key hashes under `alg`.
    fn hashes(&self, alg: HashAlg) -> (&[u8], &[u8]) {
        match alg {
            HashAlg::Sha1 => (&self.sha1_name, &self.sha1_key),
            HashAlg::Sha256 => (&self.sha256_name, &self.sha256_key),
        }
    }

    /// Which hash algorithm the CertID uses, if it names this issuer.
    fn matches(&self, id: &CertIdParts<'_>) -> Option<HashAlg> {
        let alg = HashAlg::of(&id.hash_algorithm)?;
        let (name, key) = self.hashes(alg);
        (id.name_hash == name && id.key_hash == key).then_some(alg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    const ALL: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    fn of(oid: &der::asn1::ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.oid() == *oid)
    }

    fn oid(self) -> der::asn1::ObjectIdentifier {
        match self {
            HashAlg::Sha1 => ID_SHA_1,
            HashAlg::Sha256 => ID_SHA_256,
        }
    }

    /// Its place in per-algorithm arrays.
    fn index(self) -> usize {
        match self {
            HashAlg::Sha1 => 0,
            HashAlg::Sha256 => 1,
        }
    }
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

/// One SingleResponse to write: the CertID's hash algorithm, the serial, its status.
type Single<'a> = (HashAlg, &'a Serial, Status);

/// The status of one certificate, as a response states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Good,
    Revoked(Revocation),
    /// Never issued by this CA.
    Unknown,
}

impl Status {
    fn of(record: Option<&CertRecord>) -> Self {
        match record {
            None => Status::Unknown,
            Some(CertRecord {
                revocation: Some(revocation),
                ..
            }) => Status::Revoked(*revocation),
            Some(_) => Status::Good,
        }
    }
}

#[derive(Debug)]
struct Cached {
    answer: OcspAnswer,
    /// The response's nextUpdate: until then it may still be served when the store cannot
    /// be read (database unreachable), though its certificate's entry is past refresh.
    next_update: i64,
}

/// What the responder keeps of one issued certificate.
#[derive(Debug)]
struct Known {
    /// Its status, as read from the store at `read_at`.
    status: Status,
    /// When the status was read, Unix seconds. Until half the response validity later, the
    /// status and the responses below are used without asking the store again.
    read_at: i64,
    /// Pre-signed responses signed from this status, by CertID hash algorithm.
    signed: [Option<Arc<Cached>>; 2],
}

impl Known {
    fn responses(&self) -> usize {
        self.signed.iter().flatten().count()
    }
}

/// The statuses and pre-signed responses of issued certificates (never of serials not
/// issued: a client cannot fill memory).
#[derive(Debug, Default)]
struct Cache {
    known: HashMap<Serial, Known>,
    /// Pre-signed responses held in `known`.
    responses: usize,
}

/// The parts of every response that never change, DER, encoded once with x509-ocsp's types.
#[derive(Debug)]
struct Template {
    /// ResponderID byKey: `[2] EXPLICIT` OCTET STRING, the SHA-1 of the signer's key.
    responder_id: Vec<u8>,
    /// The start of the canonical CertID's content, by hash algorithm: the
    /// AlgorithmIdentifier with NULL parameters and the issuer's name and key hashes.
    cert_id_prefix: [Vec<u8>; 2],
    /// The signature's AlgorithmIdentifier.
    signature_algorithm: Vec<u8>,
    /// `certs`: `[0] EXPLICIT SEQUENCE OF Certificate` holding the signer's certificate.
    certs: Vec<u8>,
}

impl Template {
    fn new(
        key_hash: &[u8],
        issuer: &IssuerIds,
        signature_algorithm: &AlgorithmIdentifierOwned,
        cert_der: &[u8],
    ) -> Result<Self, der::Error> {
        let cert_id_prefix = |alg: HashAlg| -> Result<Vec<u8>, der::Error> {
            let (name, key) = issuer.hashes(alg);
            let mut prefix = AlgorithmIdentifierOwned {
                oid: alg.oid(),
                parameters: Some(der::asn1::Any::null()),
            }
            .to_der()?;
            OctetString::new(name)?.encode_to_vec(&mut prefix)?;
            OctetString::new(key)?.encode_to_vec(&mut prefix)?;
            Ok(prefix)
        };
        let mut certs = DerOut::default();
        let explicit = certs.open(CONTEXT_0);
        certs.tlv(SEQUENCE, cert_der);
        certs.close(explicit);
        Ok(Self {
            responder_id: ResponderId::ByKey(OctetString::new(key_hash)?).to_der()?,
            cert_id_prefix: [
                cert_id_prefix(HashAlg::Sha1)?,
                cert_id_prefix(HashAlg::Sha256)?,
            ],
            signature_algorithm: signature_algorithm.to_der()?,
            certs: certs.0,
        })
    }
}

/// A DER writer: a constructed value is opened, filled, then closed, which writes its length
/// (in the fewest octets, as DER requires).
#[derive(Debug, Default)]
struct DerOut(Vec<u8>);

impl DerOut {
    fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Writes `tag` and a placeholder length; returns where the content starts.
    fn open(&mut self, tag: u8) -> usize {
        self.0.extend_from_slice(&[tag, 0]);
        self.0.len()
    }

    /// Sets the length of the value whose content starts at `start`.
    fn close(&mut self, start: usize) {
        let len = self.0.len().saturating_sub(start);
        let Some(at) = start.checked_sub(1) else {
            return;
        };
        if len < 0x80 {
            if let Some(octet) = self.0.get_mut(at) {
                *octet = len as u8;
            }
            return;
        }
        let be = len.to_be_bytes();
        let octets = be
            .get(be.iter().take_while(|b| **b == 0).count()..)
            .unwrap_or(&[]);
        if let Some(octet) = self.0.get_mut(at) {
            *octet = 0x80 | octets.len() as u8;
        }
        self.0.splice(start..start, octets.iter().copied());
    }

    fn tlv(&mut self, tag: u8, content: &[u8]) {
        let start = self.open(tag);
        self.0.extend_from_slice(content);
        self.close(start);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Signs OCSP responses with the delegated OCSP signer and keeps the statuses and pre-signed
/// responses of issued certificates.
///
/// A kept status is used instead of a store read while it is fresh (half the response
/// validity) and the store is reachable: [`OcspResponder::invalidate`] (a revocation by this
/// process) and [`OcspResponder::clear`] (a change seen in the store, by the caller's periodic
/// check) drop it, and [`OcspResponder::set_store_reachable`] stops its use while that check
/// cannot read the store. Pre-signed responses are served while fresh whatever the store, and
/// until their nextUpdate when the store cannot be read.
pub struct OcspResponder {
    key: KeyPair,
    /// SHA-1 of the signer's public key bits (the ResponderID).
    key_hash: Vec<u8>,
    /// The signer certificate's validity, Unix seconds.
    signer_validity: (u64, u64),
    issuer: IssuerIds,
    template: Template,
    validity_secs: i64,
    cache: RwLock<Cache>,
    /// Bumped by [`OcspResponder::clear`] and [`OcspResponder::invalidate`]: a status looked
    /// up before (that is, possibly before a revocation) is answered but not kept.
    generation: AtomicU64,
    /// Whether kept statuses may stand for a store read (see [`OcspResponder`]).
    store_reachable: AtomicBool,
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
        let signature_algorithm = AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        };
        // The certificate exactly as read (it parsed, so it is one DER certificate).
        let template = Template::new(&key_hash, &issuer, &signature_algorithm, cert_der)?;
        let validity = &cert.tbs_certificate.validity;
        Ok(Self {
            key,
            key_hash,
            signer_validity: (
                validity.not_before.to_unix_duration().as_secs(),
                validity.not_after.to_unix_duration().as_secs(),
            ),
            issuer,
            template,
            validity_secs,
            cache: RwLock::new(Cache::default()),
            generation: AtomicU64::new(0),
            store_reachable: AtomicBool::new(true),
        })
    }

    /// notAfter of the signer's certificate, Unix seconds.
    pub fn signer_not_after(&self) -> i64 {
        i64::try_from(self.signer_validity.1).unwrap_or(i64::MAX)
    }

    /// How many pre-signed responses the cache holds.
    pub fn cached_responses(&self) -> usize {
        self.cache.read().map(|cache| cache.responses).unwrap_or(0)
    }

    /// Drops what is kept of one certificate (its status changed).
    pub fn invalidate(&self, serial: &Serial) {
        // Bumped before the entry goes: a lookup that read the old status either sees the new
        // generation when it comes to store its result, or stores it before this removal.
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.cache.write() {
            if let Some(known) = cache.known.remove(serial) {
                cache.responses = cache.responses.saturating_sub(known.responses());
            }
        }
    }

    /// Drops every kept status and response.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.cache.write() {
            *cache = Cache::default();
        }
    }

    /// Tells whether the store can be read, so that status changes made elsewhere are seen:
    /// while it cannot, every status is read from the store (and a request fails if that read
    /// fails) instead of standing on a kept one.
    pub fn set_store_reachable(&self, reachable: bool) {
        self.store_reachable.store(reachable, Ordering::SeqCst);
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
        let parsed = RequestView::parse(request)?;
        let mut ids = Vec::with_capacity(parsed.cert_ids.len());
        for cert_id in &parsed.cert_ids {
            let alg = self.issuer.matches(cert_id).ok_or(Refusal::Unauthorized)?;
            let serial = request_serial(cert_id)?;
            // A serial that does not fit a certificate was never issued.
            let (pad, magnitude) = integer_octets(&serial);
            if pad.len() + magnitude.len() > MAX_SERIAL_OCTETS {
                return Err(Refusal::Malformed);
            }
            ids.push((alg, serial));
        }
        let now = crate::model::time::now_unix();
        if let ([(alg, serial)], None) = (ids.as_slice(), parsed.nonce) {
            return self.presigned(*alg, serial, lookup, metrics, now);
        }
        let mut singles = Vec::with_capacity(ids.len());
        for (alg, serial) in &ids {
            singles.push((*alg, serial, self.status(serial, lookup, now)?));
        }
        let answer = self.sign(&singles, parsed.nonce, now, false)?;
        metrics.ocsp_signed.fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }

    /// The end of the period in which a status read at `read_at` (and the responses signed
    /// from it) are used without asking the store again.
    fn fresh_until(&self, read_at: i64) -> i64 {
        read_at.saturating_add(self.validity_secs / 2)
    }

    /// The pre-signed response for one CertID: from the cache, else signed (from the kept
    /// status or the store's) and kept.
    fn presigned(
        &self,
        alg: HashAlg,
        serial: &Serial,
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
        metrics: &Metrics,
        now: i64,
    ) -> Result<OcspAnswer, Refusal> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut kept = None;
        let mut stale = None;
        if let Ok(cache) = self.cache.read() {
            if let Some(known) = cache.known.get(serial) {
                let signed = known.signed.get(alg.index()).and_then(Option::as_ref);
                if now < self.fresh_until(known.read_at) {
                    if let Some(hit) = signed {
                        metrics.ocsp_cached.fetch_add(1, Ordering::Relaxed);
                        return Ok(hit.answer.clone());
                    }
                    kept = Some((known.status, known.read_at));
                } else {
                    stale = signed.cloned();
                }
            }
        }
        let kept = kept.filter(|_| self.store_reachable.load(Ordering::SeqCst));
        let (status, read_at) = match kept {
            Some(kept) => kept,
            None => match self.read_status(serial, lookup) {
                Ok(status) => (status, now),
                // The store cannot be read: a cached response not yet past its nextUpdate is
                // still a valid answer.
                Err(Refusal::Internal) => match stale.filter(|c| now < c.next_update) {
                    Some(stale) => {
                        metrics.ocsp_cached.fetch_add(1, Ordering::Relaxed);
                        return Ok(stale.answer.clone());
                    }
                    None => return Err(Refusal::Internal),
                },
                Err(other) => return Err(other),
            },
        };
        let answer = self.sign(&[(alg, serial, status)], None, now, true)?;
        metrics.ocsp_signed.fetch_add(1, Ordering::Relaxed);
        self.keep(
            serial,
            generation,
            status,
            read_at,
            Some((alg, &answer)),
            now,
        );
        Ok(answer)
    }

    /// The status of `serial` for a response signed now: the kept one while it may stand for
    /// a store read, else the store's (then kept).
    fn status(
        &self,
        serial: &Serial,
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
        now: i64,
    ) -> Result<Status, Refusal> {
        let generation = self.generation.load(Ordering::SeqCst);
        if self.store_reachable.load(Ordering::SeqCst) {
            if let Ok(cache) = self.cache.read() {
                let kept = cache.known.get(serial);
                if let Some(known) = kept.filter(|k| now < self.fresh_until(k.read_at)) {
                    return Ok(known.status);
                }
            }
        }
        let status = self.read_status(serial, lookup)?;
        self.keep(serial, generation, status, now, None, now);
        Ok(status)
    }

    fn read_status(
        &self,
        serial: &Serial,
        lookup: &dyn Fn(&Serial) -> Result<Option<CertRecord>, StoreError>,
    ) -> Result<Status, Refusal> {
        match lookup(serial) {
            Ok(record) => Ok(Status::of(record.as_ref())),
            Err(e) => {
                tracing::error!(error = %e, "OCSP status lookup failed");
                self.set_store_reachable(false);
                Err(Refusal::Internal)
            }
        }
    }

    /// Keeps `status` of `serial` (read at `read_at`) and, if given, a response just signed
    /// from it; not if the serial was never issued, nor if a status change was signalled
    /// since `generation` was read (the status may predate it).
    fn keep(
        &self,
        serial: &Serial,
        generation: u64,
        status: Status,
        read_at: i64,
        signed: Option<(HashAlg, &OcspAnswer)>,
        now: i64,
    ) {
        if status == Status::Unknown {
            return;
        }
        let Ok(mut guard) = self.cache.write() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let cache = &mut *guard;
        if cache.known.len() >= MAX_CACHED_RESPONSES || cache.responses >= MAX_CACHED_RESPONSES {
            // Stale entries go first; if all are fresh, start over.
            cache
                .known
                .retain(|_, known| now < self.fresh_until(known.read_at));
            cache.responses = cache.known.values().map(Known::responses).sum();
            if cache.known.len() >= MAX_CACHED_RESPONSES || cache.responses >= MAX_CACHED_RESPONSES
            {
                *cache = Cache::default();
            }
        }
        let fresh = Known {
            status,
            read_at,
            signed: [None, None],
        };
        let known = match cache.known.entry(serial.clone()) {
            Entry::Occupied(entry) if entry.get().read_at > read_at => return,
            Entry::Occupied(mut entry) => {
                if entry.get().read_at < read_at || entry.get().status != status {
                    // An older reading: replaced, with the responses signed from it.
                    let old = std::mem::replace(entry.get_mut(), fresh);
                    cache.responses = cache.responses.saturating_sub(old.responses());
                }
                entry.into_mut()
            }
            Entry::Vacant(entry) => entry.insert(fresh),
        };
        if let Some((alg, answer)) = signed {
            if let Some(slot) = known.signed.get_mut(alg.index()) {
                if slot.is_none() {
                    cache.responses += 1;
                }
                *slot = Some(Arc::new(Cached {
                    answer: answer.clone(),
                    next_update: now + self.validity_secs,
                }));
            }
        }
    }

    /// The pre-signing lint: a ResponseData its profile refuses is not signed; the client
    /// gets `internalError` and the log says why.
    fn lint(&self, tbs: &[u8]) -> Result<(), Refusal> {
        let expect = crate::core::lint::OcspExpectation {
            responder_key_hash: &self.key_hash,
            signer_validity: self.signer_validity,
        };
        crate::core::lint::ocsp_response(tbs, &expect).map_err(|refusal| {
            tracing::error!(%refusal, "OCSP response not signed");
            Refusal::Internal
        })
    }

    /// Writes, lints and signs the response stating `singles` (echoing `nonce`, the request's
    /// nonce extension value) as of `now`.
    fn sign(
        &self,
        singles: &[Single<'_>],
        nonce: Option<&[u8]>,
        now: i64,
        cacheable: bool,
    ) -> Result<OcspAnswer, Refusal> {
        let der = self.encode_and_sign(singles, nonce, now)?;
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

    /// The OCSPResponse (RFC 6960 §4.2.1) as DER: successful, a BasicOCSPResponse whose
    /// ResponseData is written, linted and signed in place.
    fn encode_and_sign(
        &self,
        singles: &[Single<'_>],
        nonce: Option<&[u8]>,
        now: i64,
    ) -> Result<Vec<u8>, Refusal> {
        let t = &self.template;
        let this_update = time_der(now)?;
        let next_update = time_der(now + self.validity_secs)?;
        let mut out = DerOut::with_capacity(t.certs.len() + 256 + 128 * singles.len());
        let response = out.open(SEQUENCE);
        out.raw(&SUCCESSFUL);
        let response_bytes_explicit = out.open(CONTEXT_0);
        let response_bytes = out.open(SEQUENCE);
        out.tlv(OBJECT_IDENTIFIER, ID_PKIX_OCSP_BASIC.as_bytes());
        let octets = out.open(OCTET_STRING);
        let basic = out.open(SEQUENCE);
        let tbs_at = out.0.len();
        let tbs = out.open(SEQUENCE);
        // version v1 is the DEFAULT: absent.
        out.raw(&t.responder_id);
        out.raw(&this_update); // producedAt
        let responses = out.open(SEQUENCE);
        for (alg, serial, status) in singles {
            let single = out.open(SEQUENCE);
            let cert_id = out.open(SEQUENCE);
            out.raw(t.cert_id_prefix.get(alg.index()).ok_or(Refusal::Internal)?);
            let (pad, magnitude) = integer_octets(serial);
            let integer = out.open(INTEGER);
            out.raw(pad);
            out.raw(magnitude);
            out.close(integer);
            out.close(cert_id);
            match status {
                Status::Good => out.raw(&STATUS_GOOD),
                Status::Unknown => out.raw(&STATUS_UNKNOWN),
                Status::Revoked(revocation) => {
                    let revoked = out.open(CONTEXT_1);
                    out.raw(&time_der(revocation.revoked_at)?);
                    out.raw(&[CONTEXT_0, 3, ENUMERATED, 1, revocation.reason.code()]);
                    out.close(revoked);
                }
            }
            out.raw(&this_update);
            let next = out.open(CONTEXT_0);
            out.raw(&next_update);
            out.close(next);
            out.close(single);
        }
        out.close(responses);
        if let Some(nonce) = nonce {
            let explicit = out.open(CONTEXT_1);
            let extensions = out.open(SEQUENCE);
            let extension = out.open(SEQUENCE);
            out.tlv(OBJECT_IDENTIFIER, ID_PKIX_OCSP_NONCE.as_bytes());
            // critical FALSE is the DEFAULT: absent.
            out.tlv(OCTET_STRING, nonce);
            out.close(extension);
            out.close(extensions);
            out.close(explicit);
        }
        out.close(tbs);
        let tbs_der = out.0.get(tbs_at..).ok_or(Refusal::Internal)?;
        self.lint(tbs_der)?;
        let signature = self.key.sign(tbs_der).map_err(|_| Refusal::Internal)?;
        out.raw(&t.signature_algorithm);
        let bits = out.open(BIT_STRING);
        out.raw(&[0]); // no unused bits
        out.raw(&signature);
        out.close(bits);
        out.raw(&t.certs);
        out.close(basic);
        out.close(octets);
        out.close(response_bytes);
        out.close(response_bytes_explicit);
        out.close(response);
        Ok(out.0)
    }
}

/// A serial's INTEGER content: a 0x00 octet if the magnitude's high bit is set, then the
/// magnitude.
fn integer_octets(serial: &Serial) -> (&'static [u8], &[u8]) {
    let magnitude = serial.as_bytes();
    let pad: &'static [u8] = if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        &[0]
    } else {
        &[]
    };
    (pad, magnitude)
}

/// A GeneralizedTime, DER: tag, length and `YYYYMMDDHHMMSSZ`.
fn time_der(unix: i64) -> Result<[u8; 17], Refusal> {
    let mut out = [0u8; 17];
    let written = gtime(unix)?
        .encode_to_slice(&mut out)
        .map_err(|_| Refusal::Internal)?
        .len();
    if written != out.len() {
        return Err(Refusal::Internal);
    }
    Ok(out)
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

/// An OCSPRequest (RFC 6960 §4.1.1), borrowed: the fields and decoding rules of
/// `x509_ocsp::OcspRequest`, field by field. The parts Herald never reads (version, requestor
/// name, signature, per-request extensions) are decoded with x509-ocsp's own types, only when
/// a client sends them, so that they are checked exactly as before, and never read.
#[derive(der::Sequence)]
#[allow(dead_code)]
struct OcspRequestRef<'a> {
    tbs_request: TbsRequestRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    optional_signature: Option<RequestSignature>,
}

/// A TBSRequest, borrowed.
#[derive(der::Sequence)]
#[allow(dead_code)]
struct TbsRequestRef<'a> {
    #[asn1(
        context_specific = "0",
        default = "Default::default",
        tag_mode = "EXPLICIT"
    )]
    version: Version,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    requestor_name: Option<GeneralName>,
    request_list: Vec<RequestRef<'a>>,
    #[asn1(context_specific = "2", optional = "true", tag_mode = "EXPLICIT")]
    request_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// A Request, borrowed.
#[derive(der::Sequence)]
#[allow(dead_code)]
struct RequestRef<'a> {
    req_cert: CertIdRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    single_request_extensions: Option<Extensions>,
}

/// The parts of a CertID the responder reads, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CertIdParts<'a> {
    hash_algorithm: der::asn1::ObjectIdentifier,
    /// The hash algorithm's parameters are NULL (else absent; anything else was refused).
    null_parameters: bool,
    name_hash: &'a [u8],
    key_hash: &'a [u8],
    /// The serial INTEGER's content octets (two's complement).
    serial: &'a [u8],
}

impl<'a> CertIdParts<'a> {
    fn of(id: &CertIdRef<'a>) -> Result<Self, Refusal> {
        let parameters = id.hash_algorithm.parameters;
        if !absent_or_null(parameters) {
            return Err(Refusal::Malformed);
        }
        Ok(Self {
            hash_algorithm: id.hash_algorithm.oid,
            null_parameters: parameters.is_some(),
            name_hash: id.issuer_name_hash.as_bytes(),
            key_hash: id.issuer_key_hash.as_bytes(),
            serial: id.serial_number.as_bytes(),
        })
    }
}

/// A request that parsed and is within bounds, borrowed from its bytes.
#[derive(Debug, PartialEq, Eq)]
struct RequestView<'a> {
    cert_ids: Vec<CertIdParts<'a>>,
    /// The nonce extension's value (extnValue's content), to echo.
    nonce: Option<&'a [u8]>,
}

impl<'a> RequestView<'a> {
    /// Parses a DER OCSPRequest and checks its bounds (size, number of CertIDs, hash
    /// algorithm parameters, nonce length).
    fn parse(request: &'a [u8]) -> Result<Self, Refusal> {
        if request.len() > MAX_REQUEST_BYTES {
            return Err(Refusal::Malformed);
        }
        let view = match Self::common_shape(request) {
            Some(view) => view,
            None => Self::decode(request)?,
        };
        if view.cert_ids.is_empty() || view.cert_ids.len() > MAX_CERT_IDS {
            return Err(Refusal::Malformed);
        }
        if let Some(value) = view.nonce {
            // RFC 9654: the value is an OCTET STRING of 1 to 32 octets. Some clients (older
            // OpenSSL) send the raw bytes without the inner OCTET STRING; accept both, echo
            // what was sent.
            let inner = OctetStringRef::from_der(value).map_or(value.len(), |o| o.as_bytes().len());
            if inner == 0 || inner > MAX_NONCE_BYTES {
                return Err(Refusal::Malformed);
            }
        }
        Ok(view)
    }

    /// Any request, with the decoder of [`OcspRequestRef`].
    fn decode(request: &'a [u8]) -> Result<Self, Refusal> {
        let request = OcspRequestRef::from_der(request).map_err(|_| Refusal::Malformed)?;
        let tbs = request.tbs_request;
        let cert_ids = tbs
            .request_list
            .iter()
            .map(|r| CertIdParts::of(&r.req_cert))
            .collect::<Result<_, _>>()?;
        // The first nonce extension.
        let nonce = tbs
            .request_extensions
            .iter()
            .flatten()
            .find(|e| e.id == ID_PKIX_OCSP_NONCE)
            .map(|e| e.value.as_bytes());
        Ok(Self { cert_ids, nonce })
    }

    /// The shape nearly every client sends, read without a general decoder: no version,
    /// requestor name, signature or per-request extensions; CertIDs with SHA-1 or SHA-256 and
    /// absent or NULL parameters, canonical serials, at most [`MAX_CERT_IDS`] of them; as
    /// extensions, nonces only. Whatever it reads, [`RequestView::decode`] reads the same way
    /// (a test checks this on many mutated requests); anything else is `None`, for that
    /// decoder.
    fn common_shape(request: &'a [u8]) -> Option<Self> {
        let (ocsp_request, after) = take(request, SEQUENCE)?;
        let (tbs, signature) = take(ocsp_request, SEQUENCE)?;
        if !after.is_empty() || !signature.is_empty() {
            return None;
        }
        let (mut list, extensions) = take(tbs, SEQUENCE)?;
        let mut cert_ids = Vec::with_capacity(1);
        while !list.is_empty() {
            let (request, next) = take(list, SEQUENCE)?;
            list = next;
            let (cert_id, single_extensions) = take(request, SEQUENCE)?;
            let (algorithm, fields) = take(cert_id, SEQUENCE)?;
            let (oid, parameters) = take(algorithm, OBJECT_IDENTIFIER)?;
            let hash_algorithm = HashAlg::ALL
                .into_iter()
                .map(HashAlg::oid)
                .find(|known| known.as_bytes() == oid)?;
            let null_parameters = match parameters {
                [] => false,
                [0x05, 0x00] => true,
                _ => return None,
            };
            let (name_hash, fields) = take(fields, OCTET_STRING)?;
            let (key_hash, fields) = take(fields, OCTET_STRING)?;
            let (serial, fields) = take(fields, INTEGER)?;
            // DER's INTEGER rule, and x509-cert's bound on serials.
            let canonical = !matches!(
                serial,
                [] | [0x00, 0x00..=0x7f, ..] | [0xff, 0x80..=0xff, ..]
            ) && serial.len() <= MAX_SERIAL_OCTETS + 1;
            if !single_extensions.is_empty()
                || !fields.is_empty()
                || !canonical
                || cert_ids.len() == MAX_CERT_IDS
            {
                return None;
            }
            cert_ids.push(CertIdParts {
                hash_algorithm,
                null_parameters,
                name_hash,
                key_hash,
                serial,
            });
        }
        let mut nonce = None;
        if !extensions.is_empty() {
            let (explicit, after) = take(extensions, CONTEXT_2)?;
            let (mut list, after_list) = take(explicit, SEQUENCE)?;
            if !after.is_empty() || !after_list.is_empty() || list.is_empty() {
                return None;
            }
            while !list.is_empty() {
                let (extension, next) = take(list, SEQUENCE)?;
                list = next;
                let (oid, fields) = take(extension, OBJECT_IDENTIFIER)?;
                if oid != ID_PKIX_OCSP_NONCE.as_bytes() {
                    return None;
                }
                // critical TRUE (FALSE, the DEFAULT, is absent in DER).
                let fields = fields.strip_prefix(&[0x01, 0x01, 0xff]).unwrap_or(fields);
                let (value, after_value) = take(fields, OCTET_STRING)?;
                if !after_value.is_empty() {
                    return None;
                }
                nonce = nonce.or(Some(value));
            }
        }
        Some(Self { cert_ids, nonce })
    }
}

/// The serial of a CertID: a minimal, non-negative INTEGER (a negative serial is never one this
/// CA issued, even when its bytes equal an issued serial's), else `malformedRequest`.
fn request_serial(cert_id: &CertIdParts<'_>) -> Result<Serial, Refusal> {
    // The DER content bytes, two's complement. The decoder already refuses most non-minimal
    // encodings; this checks again, independent of it.
    match cert_id.serial {
        [] => Err(Refusal::Malformed),
        [first, ..] if first & 0x80 != 0 => Err(Refusal::Malformed),
        [0x00, second, ..] if second & 0x80 == 0 => Err(Refusal::Malformed),
        bytes => Ok(Serial::from_der_integer(bytes)),
    }
}

/// True when an AlgorithmIdentifier's parameters are absent or NULL, as RFC 5754 and RFC 3370
/// allow for SHA-1 and SHA-2.
fn absent_or_null(params: Option<AnyRef<'_>>) -> bool {
    params.is_none_or(|p| der::Tagged::tag(&p) == der::Tag::Null && p.value().is_empty())
}

/// Parses a DER OCSPRequest and checks its bounds (size, number of CertIDs, nonce length).
pub fn parse_request(request: &[u8]) -> Result<ParsedRequest, Refusal> {
    let view = RequestView::parse(request)?;
    let owned = |id: &CertIdParts<'_>| -> Result<CertId, der::Error> {
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: id.hash_algorithm,
                parameters: id.null_parameters.then(der::asn1::Any::null),
            },
            issuer_name_hash: OctetString::new(id.name_hash)?,
            issuer_key_hash: OctetString::new(id.key_hash)?,
            serial_number: x509_cert::serial_number::SerialNumber::from_der(
                &der::asn1::IntRef::new(id.serial)?.to_der()?,
            )?,
        })
    };
    let cert_ids = view
        .cert_ids
        .iter()
        .map(owned)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Refusal::Malformed)?;
    let nonce = view
        .nonce
        .map(|value| {
            Ok(Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(value)?,
            })
        })
        .transpose()
        .map_err(|_: der::Error| Refusal::Malformed)?;
    Ok(ParsedRequest { cert_ids, nonce })
}

fn gtime(unix: i64) -> Result<OcspGeneralizedTime, Refusal> {
    let secs = u64::try_from(unix).map_err(|_| Refusal::Internal)?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(OcspGeneralizedTime)
        .map_err(|_| Refusal::Internal)
}

/// Decodes the GET form of a request: the path after `/ocsp/`, percent-decoded, then base64
/// (standard alphabet, padding optional; the URL-safe alphabet is accepted too). Robust to `/`,
/// `+` and `=` in the path whether or not the client percent-encoded them.
pub fn decode_get_path(path: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use std::borrow::Cow;
    // Most clients send plain base64: nothing to unescape or drop, nothing copied.
    let decoded = if path.contains('%') {
        Cow::Owned(percent_decode(path)?)
    } else {
        Cow::Borrowed(path)
    };
    let text = if decoded.contains(char::is_whitespace) {
        Cow::Owned(decoded.chars().filter(|c| !c.is_whitespace()).collect())
    } else {
        decoded
    };
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

/// OCSP requests for the tests of this module and of the HTTP layer.
#[cfg(test)]
pub(crate) mod test_requests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use x509_ocsp::{OcspRequest, Request, TbsRequest};

    /// The canonical CertID of `serial` under `alg` for `issuer`.
    pub(super) fn cert_id(issuer: &IssuerIds, alg: HashAlg, serial: &[u8]) -> CertId {
        let (name, key) = issuer.hashes(alg);
        CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: alg.oid(),
                parameters: Some(der::asn1::Any::null()),
            },
            issuer_name_hash: OctetString::new(name).unwrap(),
            issuer_key_hash: OctetString::new(key).unwrap(),
            serial_number: x509_cert::serial_number::SerialNumber::new(serial).unwrap(),
        }
    }

    /// A DER OCSPRequest for `ids`, with a nonce extension whose extnValue holds `nonce`.
    pub(crate) fn request_der(ids: Vec<CertId>, nonce: Option<&[u8]>) -> Vec<u8> {
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: ids
                    .into_iter()
                    .map(|req_cert| Request {
                        req_cert,
                        single_request_extensions: None,
                    })
                    .collect(),
                request_extensions: nonce.map(|value| {
                    vec![Extension {
                        extn_id: ID_PKIX_OCSP_NONCE,
                        critical: false,
                        extn_value: OctetString::new(value).unwrap(),
                    }]
                }),
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    /// A request for `serial` (SHA-1 CertID) to the issuer whose certificate is `issuer_der`,
    /// with the nonce `nonce` (as RFC 9654 sends it: an OCTET STRING) if given.
    pub(crate) fn sha1_request(issuer_der: &[u8], serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
        let issuer = IssuerIds::from_cert_der(issuer_der).unwrap();
        let nonce = nonce.map(|n| OctetString::new(n).unwrap().to_der().unwrap());
        request_der(
            vec![cert_id(&issuer, HashAlg::Sha1, serial)],
            nonce.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::test_requests::request_der;
    use super::*;

    use std::cell::Cell;

    use der::asn1::{Any, BitString};
    use x509_cert::ext::pkix::CrlReason;
    use x509_ocsp::{
        BasicOcspResponse, CertStatus, OcspRequest, ResponseData, RevokedInfo, SingleResponse,
    };

    use crate::model::revocation::Reason;

    const VALIDITY: i64 = 4 * 3600;

    struct Fixture {
        responder: OcspResponder,
        signer_der: Vec<u8>,
        signer_public_key: Vec<u8>,
        ed25519: bool,
    }

    /// A responder for a test issuing CA, with a delegated signer of key type `alg`.
    fn fixture(alg: &'static rcgen::SignatureAlgorithm) -> Fixture {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Issuing CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let signer_key = KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test OCSP Responder");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let signer = params.signed_by(&signer_key, &issuer).unwrap();
        let signer_public_key = signer_key.public_key_raw().to_vec();
        let responder = OcspResponder::new(
            signer_key,
            signer.der(),
            IssuerIds::from_cert_der(ca.der()).unwrap(),
            VALIDITY,
        )
        .unwrap();
        Fixture {
            responder,
            signer_der: signer.der().to_vec(),
            signer_public_key,
            ed25519: alg == &rcgen::PKCS_ED25519,
        }
    }

    fn cert_id(fx: &Fixture, alg: HashAlg, serial: &[u8]) -> CertId {
        test_requests::cert_id(&fx.responder.issuer, alg, serial)
    }

    fn basic(answer: &OcspAnswer) -> BasicOcspResponse {
        let response = OcspResponse::from_der(&answer.der).unwrap();
        BasicOcspResponse::from_der(response.response_bytes.unwrap().response.as_bytes()).unwrap()
    }

    /// The status stated by the response's only SingleResponse.
    fn status_of(answer: &OcspAnswer) -> CertStatus {
        let data = basic(answer).tbs_response_data;
        assert_eq!(data.responses.len(), 1);
        data.responses[0].cert_status
    }

    fn record(serial: &Serial, revocation: Option<Revocation>) -> CertRecord {
        CertRecord {
            serial: serial.clone(),
            issuer: "intermediate".into(),
            name: "host".into(),
            profile: "endpoint".into(),
            not_before: 0,
            not_after: i64::MAX,
            issued_at: 0,
            der: Vec::new(),
            revocation,
        }
    }

    /// What x509-ocsp's own types encode for the same response (the encoder Herald used
    /// before writing DER directly): (ResponseData, OCSPResponse) DER.
    fn reference_encoding(
        fx: &Fixture,
        singles: &[Single<'_>],
        nonce: Option<&[u8]>,
        now: i64,
        signature: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let time = |unix| gtime(unix).unwrap();
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(fx.responder.key_hash.clone()).unwrap(),
            ),
            produced_at: time(now),
            responses: singles
                .iter()
                .map(|(alg, serial, status)| SingleResponse {
                    cert_id: cert_id(fx, *alg, serial.as_bytes()),
                    cert_status: match status {
                        Status::Good => CertStatus::good(),
                        Status::Unknown => CertStatus::unknown(),
                        Status::Revoked(r) => CertStatus::revoked(RevokedInfo {
                            revocation_time: time(r.revoked_at),
                            revocation_reason: Some(
                                CrlReason::from_der(&[0x0a, 0x01, r.reason.code()]).unwrap(),
                            ),
                        }),
                    },
                    this_update: time(now),
                    next_update: Some(time(now + VALIDITY)),
                    single_extensions: None,
                })
                .collect(),
            response_extensions: nonce.map(|value| {
                vec![Extension {
                    extn_id: ID_PKIX_OCSP_NONCE,
                    critical: false,
                    extn_value: OctetString::new(value).unwrap(),
                }]
            }),
        };
        let oid = if fx.ed25519 {
            const_oid::db::rfc8410::ID_ED_25519
        } else {
            const_oid::db::rfc5912::ECDSA_WITH_SHA_256
        };
        let basic = BasicOcspResponse {
            tbs_response_data: data.clone(),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
            signature: BitString::from_bytes(signature).unwrap(),
            certs: Some(vec![
                x509_cert::Certificate::from_der(&fx.signer_der).unwrap()
            ]),
        };
        (
            data.to_der().unwrap(),
            OcspResponse::successful(basic).unwrap().to_der().unwrap(),
        )
    }

    #[test]
    fn responses_match_x509_ocsp_encoding_byte_for_byte() {
        let now = crate::model::time::now_unix();
        let revoked = |reason| {
            Status::Revoked(Revocation {
                revoked_at: now - 100,
                reason,
            })
        };
        let serials: Vec<Serial> = [
            &[0x01][..],
            &[0x7f],
            &[0x80],
            &[0x00, 0x00, 0x42],
            &[0xa5; 16],
            &[0x7f; 20],
            &[0x80; 19],
        ]
        .iter()
        .map(|b| Serial::from_bytes(b))
        .collect();
        let statuses = [
            Status::Good,
            Status::Unknown,
            revoked(Reason::Unspecified),
            revoked(Reason::KeyCompromise),
            revoked(Reason::CaCompromise),
            revoked(Reason::AffiliationChanged),
            revoked(Reason::Superseded),
            revoked(Reason::CessationOfOperation),
            revoked(Reason::PrivilegeWithdrawn),
            revoked(Reason::AaCompromise),
        ];
        let wrapped_16 = OctetString::new(&[7u8; 16][..]).unwrap().to_der().unwrap();
        let wrapped_32 = OctetString::new(&[9u8; 32][..]).unwrap().to_der().unwrap();
        let nonces: [Option<&[u8]>; 5] = [
            None,
            Some(&wrapped_16),
            Some(&wrapped_32),
            Some(&[1]),
            Some(&[0xee; 32]),
        ];
        let mut shapes: Vec<(Vec<Single<'_>>, Option<&[u8]>)> = Vec::new();
        for (i, serial) in serials.iter().enumerate() {
            for (j, status) in statuses.iter().enumerate() {
                let alg = HashAlg::ALL[(i + j) % 2];
                shapes.push((vec![(alg, serial, *status)], nonces[(i + j) % nonces.len()]));
            }
        }
        // Sixteen CertIDs (the most a request may ask), every status: long lengths.
        let many: Vec<_> = (0..MAX_CERT_IDS)
            .map(|i| {
                (
                    HashAlg::ALL[i % 2],
                    &serials[i % serials.len()],
                    statuses[i % statuses.len()],
                )
            })
            .collect();
        shapes.push((many.clone(), None));
        shapes.push((many, Some(&wrapped_32)));
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let fx = fixture(alg);
            for (singles, nonce) in &shapes {
                let ours = fx.responder.sign(singles, *nonce, now, false).unwrap();
                let signature = basic(&ours).signature.raw_bytes().to_vec();
                let (tbs, full) = reference_encoding(&fx, singles, *nonce, now, &signature);
                assert_eq!(&ours.der[..], &full[..], "{singles:?} {nonce:?}");
                let verify: &dyn ring::signature::VerificationAlgorithm = if fx.ed25519 {
                    &ring::signature::ED25519
                } else {
                    &ring::signature::ECDSA_P256_SHA256_ASN1
                };
                ring::signature::UnparsedPublicKey::new(verify, &fx.signer_public_key)
                    .verify(&tbs, &signature)
                    .unwrap();
            }
        }
    }

    /// The request parsing Herald did with x509-ocsp's owned types: the CertIDs and the nonce
    /// value, or the refusal.
    fn reference_parse(request: &[u8]) -> Result<(Vec<CertId>, Option<Vec<u8>>), Refusal> {
        if request.len() > MAX_REQUEST_BYTES {
            return Err(Refusal::Malformed);
        }
        let req = OcspRequest::from_der(request).map_err(|_| Refusal::Malformed)?;
        let list = &req.tbs_request.request_list;
        if list.is_empty() || list.len() > MAX_CERT_IDS {
            return Err(Refusal::Malformed);
        }
        let null = |p: &Any| der::Tagged::tag(p) == der::Tag::Null && p.value().is_empty();
        if list.iter().any(|r| {
            !r.req_cert
                .hash_algorithm
                .parameters
                .as_ref()
                .is_none_or(null)
        }) {
            return Err(Refusal::Malformed);
        }
        let nonce = match req
            .tbs_request
            .request_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id.to_string() == "1.3.6.1.5.5.7.48.1.2")
        {
            None => None,
            Some(ext) => {
                let value = ext.extn_value.as_bytes();
                let inner =
                    OctetString::from_der(value).map_or(value.len(), |o| o.as_bytes().len());
                if inner == 0 || inner > MAX_NONCE_BYTES {
                    return Err(Refusal::Malformed);
                }
                Some(value.to_vec())
            }
        };
        Ok((list.iter().map(|r| r.req_cert.clone()).collect(), nonce))
    }

    #[test]
    fn request_parser_accepts_and_refuses_exactly_as_x509_ocsp() {
        let fx = fixture(&rcgen::PKCS_ECDSA_P256_SHA256);
        let id = |alg, serial: &[u8]| cert_id(&fx, alg, serial);
        let wrapped = OctetString::new(&[3u8; 16][..]).unwrap().to_der().unwrap();
        let mut with_everything = OcspRequest::from_der(&request_der(
            vec![id(HashAlg::Sha1, &[0x42])],
            Some(&wrapped),
        ))
        .unwrap();
        with_everything.tbs_request.requestor_name = Some(GeneralName::DnsName(
            der::asn1::Ia5String::new("client.example").unwrap(),
        ));
        with_everything.tbs_request.request_list[0].single_request_extensions =
            Some(vec![Extension {
                extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_SERVICE_LOCATOR,
                critical: false,
                extn_value: OctetString::new(vec![0x30, 0x00]).unwrap(),
            }]);
        with_everything.optional_signature = Some(RequestSignature {
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&[1, 2, 3]).unwrap(),
            certs: None,
        });
        let bases = [
            request_der(vec![id(HashAlg::Sha1, &[0x42])], None),
            request_der(
                vec![
                    id(HashAlg::Sha1, &[0x01, 0x02]),
                    id(HashAlg::Sha256, &[0x7f; 20]),
                    id(HashAlg::Sha1, &[0x80; 19]),
                ],
                Some(&wrapped),
            ),
            request_der(vec![id(HashAlg::Sha256, &[0x42])], Some(&[0xee; 33])),
            request_der(vec![id(HashAlg::Sha256, &[0x42])], Some(&[0xee; 32])),
            request_der((0..17).map(|_| id(HashAlg::Sha1, &[1])).collect(), None),
            with_everything.to_der().unwrap(),
        ];
        let common = Cell::new(0);
        let check = |bytes: &[u8]| {
            let ours = parse_request(bytes).map(|p| {
                let nonce = p.nonce.map(|n| n.extn_value.as_bytes().to_vec());
                (p.cert_ids, nonce)
            });
            assert_eq!(ours, reference_parse(bytes), "{bytes:02x?}");
            // The reader of the common shape reads what the general decoder reads.
            if let Some(view) = RequestView::common_shape(bytes) {
                assert_eq!(Ok(view), RequestView::decode(bytes), "{bytes:02x?}");
                common.set(common.get() + 1);
            }
        };
        let mut state = 0x9e37_79b9_u32;
        let mut accepted = 0;
        for base in &bases {
            for len in 0..=base.len() {
                check(&base[..len]);
            }
            for _ in 0..3000 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let mut bytes = base.clone();
                let at = state as usize % bytes.len();
                bytes[at] ^= (state >> 24) as u8 | 1;
                check(&bytes);
                accepted += usize::from(parse_request(&bytes).is_ok());
            }
        }
        // The mutations reach both sides of the decision, not only refusals, and both readers.
        assert!(accepted > 100, "{accepted}");
        assert!(common.get() > 100, "{}", common.get());
        assert!(RequestView::common_shape(&bases[5]).is_none());
    }

    #[test]
    fn nonce_requests_sign_from_the_kept_status_until_it_changes() {
        let fx = fixture(&rcgen::PKCS_ECDSA_P256_SHA256);
        let r = &fx.responder;
        let metrics = Metrics::default();
        let serial = Serial::from_bytes(&[0x42; 16]);
        let lookups = Cell::new(0);
        let revocation = Cell::new(None);
        let lookup = |s: &Serial| {
            lookups.set(lookups.get() + 1);
            Ok(Some(record(s, revocation.get())))
        };
        let with_nonce = |n: u8| {
            let value = OctetString::new(&[n; 16][..]).unwrap().to_der().unwrap();
            request_der(
                vec![cert_id(&fx, HashAlg::Sha1, serial.as_bytes())],
                Some(&value),
            )
        };
        let plain = request_der(vec![cert_id(&fx, HashAlg::Sha256, serial.as_bytes())], None);

        // The first nonce request reads the store; the next ones, and the first pre-signed
        // response, are signed from the kept status.
        assert!(matches!(
            status_of(&r.respond(&with_nonce(1), &lookup, &metrics)),
            CertStatus::Good(_)
        ));
        assert!(matches!(
            status_of(&r.respond(&with_nonce(2), &lookup, &metrics)),
            CertStatus::Good(_)
        ));
        assert!(matches!(
            status_of(&r.respond(&plain, &lookup, &metrics)),
            CertStatus::Good(_)
        ));
        assert_eq!(lookups.get(), 1);

        // Revoked by this process: the next answer, nonce or not, says so.
        revocation.set(Some(Revocation {
            revoked_at: crate::model::time::now_unix() - 1,
            reason: Reason::KeyCompromise,
        }));
        r.invalidate(&serial);
        assert!(matches!(
            status_of(&r.respond(&with_nonce(3), &lookup, &metrics)),
            CertStatus::Revoked(_)
        ));
        assert!(matches!(
            status_of(&r.respond(&plain, &lookup, &metrics)),
            CertStatus::Revoked(_)
        ));
        assert_eq!(lookups.get(), 2);

        // A change seen in the store (another process): everything is read again.
        r.clear();
        r.respond(&with_nonce(4), &lookup, &metrics);
        assert_eq!(lookups.get(), 3);
    }

    #[test]
    fn store_unreachable_nonce_answers_internal_error_not_a_kept_status() {
        let fx = fixture(&rcgen::PKCS_ECDSA_P256_SHA256);
        let r = &fx.responder;
        let metrics = Metrics::default();
        let serial = Serial::from_bytes(&[0x42; 16]);
        let good = |s: &Serial| Ok(Some(record(s, None)));
        let down = |_: &Serial| Err(StoreError::Unavailable("connection refused".into()));
        let nonce = OctetString::new(&[5u8; 16][..]).unwrap().to_der().unwrap();
        let with_nonce = request_der(
            vec![cert_id(&fx, HashAlg::Sha1, serial.as_bytes())],
            Some(&nonce),
        );
        let plain = request_der(vec![cert_id(&fx, HashAlg::Sha1, serial.as_bytes())], None);
        let presigned = r.respond(&plain, &good, &metrics);
        assert!(matches!(status_of(&presigned), CertStatus::Good(_)));

        // The periodic check cannot read the store: a kept status no longer stands for it.
        r.set_store_reachable(false);
        let internal_error = [0x30, 0x03, 0x0a, 0x01, 0x02];
        assert_eq!(
            &r.respond(&with_nonce, &down, &metrics).der[..],
            internal_error
        );
        // The pre-signed response still answers, until its nextUpdate.
        assert_eq!(r.respond(&plain, &down, &metrics).der, presigned.der);

        // Reachable again: the kept status answers nonce requests without a store read.
        r.set_store_reachable(true);
        assert!(matches!(
            status_of(&r.respond(&with_nonce, &down, &metrics)),
            CertStatus::Good(_)
        ));
    }

    #[test]
    fn revocation_during_a_status_read_is_never_cached() {
        let fx = fixture(&rcgen::PKCS_ECDSA_P256_SHA256);
        let r = &fx.responder;
        let metrics = Metrics::default();
        let serial = Serial::from_bytes(&[0x42; 16]);
        // The read sees the certificate good; its revocation commits (and invalidates) right
        // after the read, before the response is kept.
        let racing = |s: &Serial| {
            let before = record(s, None);
            r.invalidate(s);
            Ok(Some(before))
        };
        let revoked = |s: &Serial| {
            Ok(Some(record(
                s,
                Some(Revocation {
                    revoked_at: crate::model::time::now_unix() - 1,
                    reason: Reason::Superseded,
                }),
            )))
        };
        let nonce = OctetString::new(&[5u8; 16][..]).unwrap().to_der().unwrap();
        for nonce in [None, Some(&nonce[..])] {
            let request = request_der(vec![cert_id(&fx, HashAlg::Sha1, serial.as_bytes())], nonce);
            assert!(matches!(
                status_of(&r.respond(&request, &racing, &metrics)),
                CertStatus::Good(_)
            ));
            assert!(
                matches!(
                    status_of(&r.respond(&request, &revoked, &metrics)),
                    CertStatus::Revoked(_)
                ),
                "nonce {nonce:?}"
            );
            r.clear();
        }
    }

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
