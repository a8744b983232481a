//! The pre-signing lint: before the CA's key signs a certificate, a CRL or an OCSP response,
//! the to-be-signed bytes are parsed once and checked against their profile (RFC 5280, RFC
//! 6960 and Herald's own profile, see ARCHITECTURE.md "X.509 profile"). A failure refuses the
//! signature: nothing is signed, stored or released.
//!
//! The checks read the exact bytes the key is about to sign, so they catch a fault wherever it
//! came from (rcgen, the hand-written CRL encoder, the configuration). They parse with
//! `x509-cert` / `x509-ocsp`, once, without re-encoding; CRL entries are read with borrowed
//! types and identical revocation dates and entry extensions are checked once.
//!
//! This module also holds the one helper for RFC 5280's Time rule (UTCTime through 2049,
//! GeneralizedTime from 2050 on), used by every encoder that writes a Time.

use std::cell::RefCell;
use std::time::Duration;

use const_oid::db::{rfc5280 as oids, rfc5912, rfc6960, rfc8410};
use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, GeneralizedTime, IntRef, OctetStringRef, UtcTime};
use der::{DateTime, Decode, Encode, Reader, SliceReader, Tagged};
use rcgen::{CertificateParams, Issuer, KeyPair, PublicKeyData, SigningKey};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::time::Time;

use crate::core::policy::Usage;

/// First year RFC 5280 encodes as GeneralizedTime.
const GENERALIZED_TIME_FROM_YEAR: u16 = 2050;
/// Longest serial number, in content octets (RFC 5280 §4.1.2.2).
const MAX_SERIAL_OCTETS: usize = 20;
/// Longest common name (RFC 5280 ub-common-name).
const MAX_COMMON_NAME: usize = 64;
/// Longest DNS name (RFC 1035 §2.3.4, without the final dot).
const MAX_DNS_NAME: usize = 253;

/// The Time RFC 5280 requires for `unix` seconds (§4.1.2.5, §5.1.2.4): UTCTime through 2049,
/// GeneralizedTime from 2050 on. Every Time Herald writes into a certificate or CRL comes
/// from here (rcgen applies the same rule to certificate validity; the lint checks it).
pub(crate) fn rfc5280_time(unix: i64) -> Result<Time, der::Error> {
    let secs = u64::try_from(unix).map_err(|_| der::Error::from(der::ErrorKind::DateTime))?;
    let dt = DateTime::from_unix_duration(Duration::from_secs(secs))?;
    if dt.year() < GENERALIZED_TIME_FROM_YEAR {
        Ok(UtcTime::from_date_time(dt)?.into())
    } else {
        Ok(GeneralizedTime::from_date_time(dt).into())
    }
}

/// A to-be-signed object its profile refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pre-signing lint refused the {object}: {problem}")]
pub struct LintError {
    /// What was about to be signed (`certificate`, `CRL`, `OCSP response`).
    pub object: &'static str,
    /// The first problem found.
    pub problem: String,
}

fn refuse(object: &'static str, problem: impl Into<String>) -> LintError {
    LintError {
        object,
        problem: problem.into(),
    }
}

fn parse_err(object: &'static str, e: der::Error) -> LintError {
    refuse(object, format!("does not parse: {e}"))
}

/// The Time rule, for a decoded Time.
fn check_time(object: &'static str, field: &str, time: &Time) -> Result<(), LintError> {
    let year = time.to_date_time().year();
    match time {
        Time::UtcTime(_) if year >= GENERALIZED_TIME_FROM_YEAR => Err(refuse(
            object,
            format!("{field} {time} must be GeneralizedTime (year from 2050)"),
        )),
        Time::GeneralTime(_) if year < GENERALIZED_TIME_FROM_YEAR => Err(refuse(
            object,
            format!("{field} {time} must be UTCTime (year through 2049)"),
        )),
        _ => Ok(()),
    }
}

fn unix(time: &Time) -> u64 {
    time.to_unix_duration().as_secs()
}

/// A serial number: positive, not zero, at most 20 octets (RFC 5280 §4.1.2.2).
fn check_serial(object: &'static str, content: &[u8]) -> Result<(), LintError> {
    if content.is_empty() || content.len() > MAX_SERIAL_OCTETS {
        return Err(refuse(
            object,
            format!(
                "serial number of {} octets (1 to {MAX_SERIAL_OCTETS} allowed)",
                content.len()
            ),
        ));
    }
    if content.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(refuse(object, "negative serial number"));
    }
    if content.iter().all(|b| *b == 0) {
        return Err(refuse(object, "serial number zero"));
    }
    Ok(())
}

/// A DNS name in preferred name syntax (RFC 1034 §3.5, RFC 5280 §4.2.1.6): lower-case
/// letters, digits and hyphens in labels of 1 to 63 characters that neither start nor end
/// with a hyphen, at least two labels, the last not all digits, 253 characters at most.
/// `localhost` alone is accepted where `allow_localhost` (the server's own TLS certificate).
pub(crate) fn check_dns_name(name: &str, allow_localhost: bool) -> Result<(), String> {
    if allow_localhost && name == "localhost" {
        return Ok(());
    }
    if name.is_empty() || name.len() > MAX_DNS_NAME {
        return Err(format!(
            "DNS name {name:?} must have 1 to {MAX_DNS_NAME} characters"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "DNS name {name:?} has a single label; give it a domain"
        ));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "DNS name {name:?}: label {label:?} is not 1 to 63 lower-case letters, digits \
                 or inner hyphens"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("DNS name {name:?} ends in an all-numeric label"));
    }
    Ok(())
}

/// The RFC 7093 §2 method 1 key identifier: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey bits. Used for every Subject Key Identifier Herald writes.
pub(crate) fn key_identifier(key: &impl PublicKeyData) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.der_bytes());
    digest.as_ref().iter().take(20).copied().collect()
}

/// The signature AlgorithmIdentifier OID of a CA key.
pub(crate) fn signature_oid(alg: &rcgen::SignatureAlgorithm) -> Option<ObjectIdentifier> {
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(rfc5912::ECDSA_WITH_SHA_256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Some(rfc5912::ECDSA_WITH_SHA_384)
    } else if alg == &rcgen::PKCS_ED25519 {
        Some(rfc8410::ID_ED_25519)
    } else {
        None
    }
}

/// What the lint knows about an issuing CA.
#[derive(Debug, Clone)]
pub(crate) struct IssuerFacts {
    /// Subject Name, DER.
    pub(crate) subject: Vec<u8>,
    /// Subject key identifier, if the certificate has one.
    pub(crate) key_id: Option<Vec<u8>>,
    /// notBefore, Unix seconds.
    pub(crate) not_before: u64,
    /// notAfter, Unix seconds.
    pub(crate) not_after: u64,
}

impl IssuerFacts {
    /// From the issuer's certificate.
    pub(crate) fn from_cert_der(der: &[u8]) -> Result<Self, der::Error> {
        let cert = x509_cert::Certificate::from_der(der)?;
        let tbs = cert.tbs_certificate;
        let key_id = tbs
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oids::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .map(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()))
            .transpose()?
            .map(|k| k.0.as_bytes().to_vec());
        Ok(Self {
            subject: tbs.subject.to_der()?,
            key_id,
            not_before: unix(&tbs.validity.not_before),
            not_after: unix(&tbs.validity.not_after),
        })
    }
}

/// The profile a certificate must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertProfile {
    /// The self-signed root: CA, keyCertSign and cRLSign, no EKU.
    Root,
    /// The issuing CA: CA with path length 0.
    IssuingCa,
    /// The delegated OCSP signer: OCSPSigning, ocsp-nocheck.
    OcspSigner,
    /// An end-entity certificate of a profile (endpoint, relay, server, the server's own TLS).
    EndEntity(Usage),
}

/// What a certificate is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertExpectation<'a> {
    /// The profile.
    pub(crate) profile: CertProfile,
    /// The issuer; `None` for a self-signed certificate (its own facts apply).
    pub(crate) issuer: Option<&'a IssuerFacts>,
    /// The signature algorithm of the signing key.
    pub(crate) signature: ObjectIdentifier,
}

const CERT: &str = "certificate";

/// Checks a TBSCertificate against its profile.
pub(crate) fn certificate(tbs_der: &[u8], expect: &CertExpectation<'_>) -> Result<(), LintError> {
    let tbs = x509_cert::TbsCertificate::from_der(tbs_der).map_err(|e| parse_err(CERT, e))?;
    if tbs.version != x509_cert::Version::V3 {
        return Err(refuse(CERT, "version is not v3"));
    }
    check_serial(CERT, tbs.serial_number.as_bytes())?;
    if tbs.signature.oid != expect.signature || tbs.signature.parameters.is_some() {
        return Err(refuse(
            CERT,
            format!(
                "signature algorithm {} does not match the signing key",
                tbs.signature.oid
            ),
        ));
    }
    let validity = &tbs.validity;
    check_time(CERT, "notBefore", &validity.not_before)?;
    check_time(CERT, "notAfter", &validity.not_after)?;
    let (not_before, not_after) = (unix(&validity.not_before), unix(&validity.not_after));
    if not_before >= not_after {
        return Err(refuse(CERT, "notBefore is not before notAfter"));
    }
    let der = |e| parse_err(CERT, e);
    let subject = tbs.subject.to_der().map_err(der)?;
    let issuer_der = tbs.issuer.to_der().map_err(der)?;
    let own = |ski: Option<Vec<u8>>| IssuerFacts {
        subject: subject.clone(),
        key_id: ski,
        not_before,
        not_after,
    };
    check_subject(&tbs.subject, expect.profile)?;

    let extensions = tbs.extensions.as_deref().unwrap_or_default();
    let mut seen: Vec<ObjectIdentifier> = Vec::with_capacity(extensions.len());
    let mut facts = Facts::default();
    for ext in extensions {
        if seen.contains(&ext.extn_id) {
            return Err(refuse(CERT, format!("extension {} twice", ext.extn_id)));
        }
        seen.push(ext.extn_id);
        facts.read(ext, expect.profile)?;
    }

    let self_facts;
    let issuer = match expect.issuer {
        Some(issuer) => issuer,
        None => {
            self_facts = own(facts.ski.clone());
            &self_facts
        }
    };
    if issuer_der != issuer.subject {
        return Err(refuse(
            CERT,
            "issuer name differs from the issuer's subject",
        ));
    }
    if not_before < issuer.not_before || not_after > issuer.not_after {
        return Err(refuse(CERT, "validity is not inside the issuer's validity"));
    }
    facts.check(expect.profile, issuer, expect.issuer.is_none())
}

/// One common name; and the endpoint's group: certificates of client profiles hold at most
/// one organizationalUnitName, a valid group name, every other certificate none.
fn check_subject(subject: &x509_cert::name::Name, profile: CertProfile) -> Result<(), LintError> {
    if profile == CertProfile::EndEntity(Usage::Client) {
        crate::core::groups::subject_group(subject)
            .map_err(|e| refuse(CERT, format!("group: {e}")))?;
    } else {
        let units = crate::core::groups::organizational_units(subject)
            .map_err(|e| refuse(CERT, format!("organizational unit: {e}")))?;
        if !units.is_empty() {
            return Err(refuse(
                CERT,
                "organizationalUnitName outside client certificates",
            ));
        }
    }
    let mut common_names = 0;
    for rdn in subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid::db::rfc4519::CN {
                common_names += 1;
                let len = std::str::from_utf8(atv.value.value())
                    .map(|s| s.chars().count())
                    .map_err(|_| refuse(CERT, "common name is not UTF-8"))?;
                if len == 0 || len > MAX_COMMON_NAME {
                    return Err(refuse(
                        CERT,
                        format!("common name of {len} characters (1 to {MAX_COMMON_NAME})"),
                    ));
                }
            }
        }
    }
    if common_names != 1 {
        return Err(refuse(CERT, "subject must hold exactly one common name"));
    }
    Ok(())
}

/// What the extensions of a certificate say.
#[derive(Default)]
struct Facts {
    basic: Option<BasicConstraints>,
    key_usage: Option<KeyUsage>,
    eku: Option<Vec<ObjectIdentifier>>,
    san: Option<SubjectAltName>,
    ski: Option<Vec<u8>>,
    aki: Option<Option<Vec<u8>>>,
    ocsp_nocheck: bool,
}

fn decode_ext<'a, T: Decode<'a>>(ext: &'a x509_cert::ext::Extension) -> Result<T, LintError> {
    T::from_der(ext.extn_value.as_bytes())
        .map_err(|e| refuse(CERT, format!("extension {}: {e}", ext.extn_id)))
}

impl Facts {
    fn read(
        &mut self,
        ext: &x509_cert::ext::Extension,
        profile: CertProfile,
    ) -> Result<(), LintError> {
        let id = ext.extn_id;
        // RFC 5280: basicConstraints critical in CA certificates, keyUsage critical; the rest
        // non-critical (SAN: the subject is never empty here).
        let must_be_critical = id == oids::ID_CE_BASIC_CONSTRAINTS || id == oids::ID_CE_KEY_USAGE;
        if ext.critical != must_be_critical {
            return Err(refuse(
                CERT,
                format!(
                    "extension {id} must {}be critical",
                    if must_be_critical { "" } else { "not " }
                ),
            ));
        }
        if id == oids::ID_CE_BASIC_CONSTRAINTS {
            self.basic = Some(decode_ext(ext)?);
        } else if id == oids::ID_CE_KEY_USAGE {
            self.key_usage = Some(decode_ext(ext)?);
        } else if id == oids::ID_CE_EXT_KEY_USAGE {
            self.eku = Some(decode_ext::<ExtendedKeyUsage>(ext)?.0);
        } else if id == oids::ID_CE_SUBJECT_ALT_NAME {
            self.san = Some(decode_ext(ext)?);
        } else if id == oids::ID_CE_SUBJECT_KEY_IDENTIFIER {
            self.ski = Some(
                decode_ext::<SubjectKeyIdentifier>(ext)?
                    .0
                    .as_bytes()
                    .to_vec(),
            );
        } else if id == oids::ID_CE_AUTHORITY_KEY_IDENTIFIER {
            let aki: AuthorityKeyIdentifier = decode_ext(ext)?;
            self.aki = Some(aki.key_identifier.map(|k| k.as_bytes().to_vec()));
        } else if id == rfc6960::ID_PKIX_OCSP_NOCHECK && profile == CertProfile::OcspSigner {
            der::asn1::Null::from_der(ext.extn_value.as_bytes())
                .map_err(|e| refuse(CERT, format!("ocsp-nocheck: {e}")))?;
            self.ocsp_nocheck = true;
        } else if id != oids::ID_CE_CRL_DISTRIBUTION_POINTS
            && id != oids::ID_PE_AUTHORITY_INFO_ACCESS
        {
            return Err(refuse(
                CERT,
                format!("extension {id} is not in the profile"),
            ));
        }
        Ok(())
    }

    fn check(
        self,
        profile: CertProfile,
        issuer: &IssuerFacts,
        self_signed: bool,
    ) -> Result<(), LintError> {
        let ski = self
            .ski
            .ok_or_else(|| refuse(CERT, "no subject key identifier"))?;
        if ski.is_empty() {
            return Err(refuse(CERT, "empty subject key identifier"));
        }
        match (self.aki, self_signed) {
            (Some(Some(aki)), _) if Some(&aki) == issuer.key_id.as_ref() => {}
            (None, true) => {}
            (Some(Some(_)), _) => {
                return Err(refuse(
                    CERT,
                    "authority key identifier differs from the issuer's key identifier",
                ))
            }
            _ => return Err(refuse(CERT, "no authority key identifier")),
        }
        let key_usage = self
            .key_usage
            .ok_or_else(|| refuse(CERT, "no key usage"))?
            .0;
        let (is_ca, path_len) = match self.basic {
            Some(b) => (b.ca, b.path_len_constraint),
            None => (false, None),
        };
        match profile {
            CertProfile::Root | CertProfile::IssuingCa => {
                let wanted_len = if profile == CertProfile::Root { 1 } else { 0 };
                if !is_ca || path_len.is_some_and(|l| l > wanted_len) {
                    return Err(refuse(
                        CERT,
                        "a CA certificate needs cA and its path length",
                    ));
                }
                let required = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
                let allowed = required | KeyUsages::DigitalSignature;
                if !key_usage.contains(required) || !allowed.contains(key_usage) {
                    return Err(refuse(CERT, "CA key usage must be keyCertSign and cRLSign"));
                }
                if self.eku.is_some() {
                    return Err(refuse(CERT, "CA certificate with extended key usage"));
                }
            }
            CertProfile::OcspSigner | CertProfile::EndEntity(_) => {
                if is_ca {
                    return Err(refuse(CERT, "end-entity certificate with cA set"));
                }
                if key_usage != KeyUsage(KeyUsages::DigitalSignature.into()).0 {
                    return Err(refuse(
                        CERT,
                        "end-entity key usage must be digitalSignature only",
                    ));
                }
                let wanted = match profile {
                    CertProfile::EndEntity(Usage::Client) => oids::ID_KP_CLIENT_AUTH,
                    CertProfile::EndEntity(Usage::Server) => oids::ID_KP_SERVER_AUTH,
                    _ => oids::ID_KP_OCSP_SIGNING,
                };
                if self.eku.as_deref() != Some(&[wanted][..]) {
                    return Err(refuse(
                        CERT,
                        format!("extended key usage must be exactly {wanted}"),
                    ));
                }
                if (profile == CertProfile::OcspSigner) != self.ocsp_nocheck {
                    return Err(refuse(CERT, "ocsp-nocheck belongs to the OCSP signer only"));
                }
            }
        }
        if let CertProfile::EndEntity(usage) = profile {
            let san = self
                .san
                .ok_or_else(|| refuse(CERT, "end-entity certificate without subjectAltName"))?;
            if san.0.is_empty() {
                return Err(refuse(CERT, "empty subjectAltName"));
            }
            for name in &san.0 {
                match name {
                    GeneralName::DnsName(dns) => {
                        check_dns_name(dns.as_str(), usage == Usage::Server)
                            .map_err(|p| refuse(CERT, p))?;
                    }
                    GeneralName::IpAddress(ip)
                        if usage == Usage::Server && matches!(ip.as_bytes().len(), 4 | 16) => {}
                    _ => return Err(refuse(CERT, "subjectAltName entry not in the profile")),
                }
            }
        } else if self.san.is_some() {
            return Err(refuse(
                CERT,
                "subjectAltName outside end-entity certificates",
            ));
        }
        Ok(())
    }
}

/// A signing key that lints what it is given before signing it. rcgen hands the key the
/// exact TBSCertificate, so a refused certificate is never signed.
struct LintingKey<'a> {
    key: &'a KeyPair,
    expect: CertExpectation<'a>,
    refusal: RefCell<Option<LintError>>,
}

impl PublicKeyData for LintingKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl SigningKey for LintingKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        if let Err(e) = certificate(msg, &self.expect) {
            *self.refusal.borrow_mut() = Some(e);
            return Err(rcgen::Error::RemoteKeyError);
        }
        self.key.sign(msg)
    }
}

/// Why a certificate was not signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// The pre-signing lint refused it.
    #[error(transparent)]
    Lint(#[from] LintError),
    /// Building or signing failed.
    #[error("{0}")]
    Build(String),
}

/// Which key signs a certificate.
pub(crate) enum Signer<'a> {
    /// The certificate's own key (a self-signed root).
    SelfSigned(&'a KeyPair),
    /// The key of the CA whose certificate is `cert_der` (its subject, key identifier and
    /// key usages are taken from there).
    Ca {
        /// The CA certificate, DER.
        cert_der: &'a [u8],
        /// Its facts, for the lint.
        facts: &'a IssuerFacts,
        /// Its key.
        key: &'a KeyPair,
    },
}

/// Signs `params` for `subject` (ignored when self-signed) once the lint accepted the
/// TBSCertificate under `profile`.
pub(crate) fn sign_certificate(
    params: &CertificateParams,
    subject: &dyn PublicKeyData,
    signer: Signer<'_>,
    profile: CertProfile,
) -> Result<rcgen::Certificate, SignError> {
    let build = |e: rcgen::Error| SignError::Build(e.to_string());
    let (key, facts) = match &signer {
        Signer::SelfSigned(key) => (*key, None),
        Signer::Ca { facts, key, .. } => (*key, Some(*facts)),
    };
    let signature = signature_oid(key.algorithm())
        .ok_or_else(|| SignError::Build("unsupported CA key algorithm".into()))?;
    let linting = LintingKey {
        key,
        expect: CertExpectation {
            profile,
            issuer: facts,
            signature,
        },
        refusal: RefCell::new(None),
    };
    let (result, refusal) = match signer {
        Signer::SelfSigned(_) => {
            let result = params.self_signed(&linting);
            (result, linting.refusal.into_inner())
        }
        Signer::Ca { cert_der, .. } => {
            let issuer =
                Issuer::from_ca_cert_der(&cert_der.to_vec().into(), linting).map_err(build)?;
            let result = params.signed_by(&PublicKeyRef(subject), &issuer);
            (result, issuer.key().refusal.take())
        }
    };
    match (result, refusal) {
        (_, Some(refusal)) => Err(SignError::Lint(refusal)),
        (Ok(cert), None) => Ok(cert),
        (Err(e), None) => Err(build(e)),
    }
}

/// A borrowed public key for rcgen.
struct PublicKeyRef<'a>(&'a dyn PublicKeyData);

impl PublicKeyData for PublicKeyRef<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

const CRL: &str = "CRL";

/// One revokedCertificates entry, borrowed.
#[derive(der::Sequence)]
struct EntryRef<'a> {
    serial: IntRef<'a>,
    date: AnyRef<'a>,
    extensions: Option<AnyRef<'a>>,
}

/// One Extension, borrowed (the CRL lint, the OCSP lint and the OCSP request parser).
#[derive(der::Sequence)]
pub(crate) struct ExtensionRef<'a> {
    pub(crate) id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    pub(crate) critical: bool,
    pub(crate) value: OctetStringRef<'a>,
}

/// An OCSP CertID (RFC 6960 §4.1.1), borrowed: the fields and decoding rules of
/// `x509_ocsp::CertId`.
#[derive(der::Sequence)]
pub(crate) struct CertIdRef<'a> {
    pub(crate) hash_algorithm: spki::AlgorithmIdentifierRef<'a>,
    pub(crate) issuer_name_hash: OctetStringRef<'a>,
    pub(crate) issuer_key_hash: OctetStringRef<'a>,
    pub(crate) serial_number: SerialRef<'a>,
}

/// A serial number INTEGER, borrowed, with x509-cert's decoding rule for `SerialNumber`:
/// canonical, at most 21 content octets (20 plus a sign octet, which some implementations
/// add beyond RFC 5280's limit).
#[derive(Clone, Copy)]
pub(crate) struct SerialRef<'a>(IntRef<'a>);

/// Most content octets of a decoded serial (x509-cert's `SerialNumber::MAX_DECODE_LEN`).
const MAX_DECODED_SERIAL_OCTETS: usize = MAX_SERIAL_OCTETS + 1;

impl<'a> SerialRef<'a> {
    /// The INTEGER's content octets (two's complement).
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.0.as_bytes()
    }
}

impl<'a> der::DecodeValue<'a> for SerialRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: der::Header) -> der::Result<Self> {
        let int = IntRef::decode_value(reader, header)?;
        if int.as_bytes().len() > MAX_DECODED_SERIAL_OCTETS {
            return Err(der::Tag::Integer.value_error());
        }
        Ok(Self(int))
    }
}

impl der::EncodeValue for SerialRef<'_> {
    fn value_len(&self) -> der::Result<der::Length> {
        self.0.value_len()
    }

    fn encode_value(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode_value(writer)
    }
}

impl der::FixedTag for SerialRef<'_> {
    const TAG: der::Tag = der::Tag::Integer;
}

/// The CRL reason codes Herald writes (RFC 5280 §5.3.1; never unspecified, certificateHold
/// or removeFromCRL).
const CRL_REASONS: [u8; 7] = [1, 2, 3, 4, 5, 9, 10];

/// Checks a TBSCertList: v2, the issuer's name and signature algorithm, the Time rule on
/// thisUpdate, nextUpdate and every revocationDate, positive serials of at most 20 octets,
/// only non-critical reasonCode entry extensions with an offered reason, the authority key
/// identifier and a CRL number, and nothing else.
pub(crate) fn crl(tbs: &[u8], issuer: &IssuerFacts, signature: &[u8]) -> Result<(), LintError> {
    let err = |e: der::Error| parse_err(CRL, e);
    let mut reader = SliceReader::new(tbs).map_err(err)?;
    reader
        .sequence(|r| {
            if r.decode::<u8>()? != 1 {
                return Ok(Err(refuse(CRL, "version is not v2")));
            }
            let alg: AnyRef<'_> = r.decode()?;
            if alg.to_der()? != signature {
                return Ok(Err(refuse(
                    CRL,
                    "signature algorithm differs from the key's",
                )));
            }
            let name: AnyRef<'_> = r.decode()?;
            if name.to_der()? != issuer.subject {
                return Ok(Err(refuse(
                    CRL,
                    "issuer name differs from the issuer's subject",
                )));
            }
            let this_update: Time = r.decode()?;
            let next_update: Option<Time> = r.decode()?;
            Ok(crl_body(r, issuer, this_update, next_update))
        })
        .map_err(err)?
}

fn crl_body<'a, R: Reader<'a>>(
    r: &mut R,
    issuer: &IssuerFacts,
    this_update: Time,
    next_update: Option<Time>,
) -> Result<(), LintError> {
    let err = |e: der::Error| parse_err(CRL, e);
    check_time(CRL, "thisUpdate", &this_update)?;
    let next_update = next_update.ok_or_else(|| refuse(CRL, "no nextUpdate"))?;
    check_time(CRL, "nextUpdate", &next_update)?;
    if unix(&next_update) <= unix(&this_update) {
        return Err(refuse(CRL, "nextUpdate is not after thisUpdate"));
    }
    if unix(&next_update) > issuer.not_after {
        return Err(refuse(CRL, "nextUpdate is after the issuer expires"));
    }
    if r.peek_tag().map_err(err)? == der::Tag::Sequence {
        r.sequence(|entries| {
            let mut good_date: Option<AnyRef<'_>> = None;
            let mut good_ext: Vec<&[u8]> = Vec::new();
            while !entries.is_finished() {
                let entry: EntryRef<'_> = entries.decode()?;
                if let Err(e) = crl_entry(&entry, &this_update, &mut good_date, &mut good_ext) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })
        .map_err(err)??;
    }
    let extensions: x509_cert::ext::Extensions = r
        .context_specific(der::TagNumber::N0, der::TagMode::Explicit)
        .map_err(err)?
        .ok_or_else(|| refuse(CRL, "no CRL extensions"))?;
    if !r.is_finished() {
        return Err(refuse(CRL, "data after the CRL extensions"));
    }
    let (mut aki, mut number) = (false, false);
    for ext in &extensions {
        if ext.critical {
            return Err(refuse(CRL, format!("critical extension {}", ext.extn_id)));
        }
        if ext.extn_id == oids::ID_CE_AUTHORITY_KEY_IDENTIFIER && !aki {
            let value = AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes()).map_err(err)?;
            if value.key_identifier.map(|k| k.as_bytes().to_vec()) != issuer.key_id {
                return Err(refuse(
                    CRL,
                    "authority key identifier differs from the issuer's",
                ));
            }
            aki = true;
        } else if ext.extn_id == oids::ID_CE_CRL_NUMBER && !number {
            let value = IntRef::from_der(ext.extn_value.as_bytes()).map_err(err)?;
            check_serial(CRL, value.as_bytes())
                .map_err(|e| refuse(CRL, format!("CRL number: {}", e.problem)))?;
            number = true;
        } else {
            return Err(refuse(
                CRL,
                format!("extension {} not in the profile (or twice)", ext.extn_id),
            ));
        }
    }
    if !(aki && number) {
        return Err(refuse(
            CRL,
            "needs the authority key identifier and a CRL number",
        ));
    }
    Ok(())
}

fn crl_entry<'a>(
    entry: &EntryRef<'a>,
    this_update: &Time,
    good_date: &mut Option<AnyRef<'a>>,
    good_ext: &mut Vec<&'a [u8]>,
) -> Result<(), LintError> {
    let err = |e: der::Error| parse_err(CRL, e);
    check_serial(CRL, entry.serial.as_bytes())?;
    // Entries revoked in the same second share their date bytes: checked once.
    if *good_date != Some(entry.date) {
        let time: Time = match entry.date.tag() {
            der::Tag::UtcTime => entry.date.decode_as::<UtcTime>().map(Time::UtcTime),
            _ => entry
                .date
                .decode_as::<GeneralizedTime>()
                .map(Time::GeneralTime),
        }
        .map_err(err)?;
        check_time(CRL, "revocationDate", &time)?;
        if unix(&time) > unix(this_update) {
            return Err(refuse(CRL, "revocationDate after thisUpdate"));
        }
        *good_date = Some(entry.date);
    }
    let Some(extensions) = &entry.extensions else {
        return Ok(());
    };
    let raw = extensions.value();
    if good_ext.contains(&raw) {
        return Ok(());
    }
    let mut reader = SliceReader::new(raw).map_err(err)?;
    let ext: ExtensionRef<'_> = reader.decode().map_err(err)?;
    if !reader.is_finished() || extensions.tag() != der::Tag::Sequence {
        return Err(refuse(CRL, "entry extensions other than one reasonCode"));
    }
    if ext.id != oids::ID_CE_CRL_REASONS || ext.critical {
        return Err(refuse(
            CRL,
            format!("entry extension {} (critical: {})", ext.id, ext.critical),
        ));
    }
    let code = der::asn1::AnyRef::from_der(ext.value.as_bytes()).map_err(err)?;
    let offered = code.tag() == der::Tag::Enumerated
        && matches!(code.value(), [c] if CRL_REASONS.contains(c));
    if !offered {
        return Err(refuse(CRL, "entry reasonCode not offered (or unspecified)"));
    }
    good_ext.push(raw);
    Ok(())
}

const OCSP: &str = "OCSP response";

/// What an OCSP response is checked against.
pub(crate) struct OcspExpectation<'a> {
    /// SHA-1 of the signer's public key bits (the ResponderID byKey).
    pub(crate) responder_key_hash: &'a [u8],
    /// The signer certificate's validity, Unix seconds.
    pub(crate) signer_validity: (u64, u64),
}

/// Longest nonce accepted in a response (RFC 9654: 1 to 32 octets).
const MAX_NONCE: usize = 32;

/// A ResponseData (RFC 6960 §4.2.1), borrowed: the fields and decoding rules of
/// `x509_ocsp::ResponseData`, with the responder ID and single extensions kept as raw values.
#[derive(der::Sequence)]
struct ResponseDataRef<'a> {
    #[asn1(
        context_specific = "0",
        default = "Default::default",
        tag_mode = "EXPLICIT"
    )]
    version: x509_ocsp::Version,
    responder_id: AnyRef<'a>,
    produced_at: x509_ocsp::OcspGeneralizedTime,
    responses: Vec<SingleResponseRef<'a>>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    response_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// A SingleResponse, borrowed.
#[derive(der::Sequence)]
struct SingleResponseRef<'a> {
    cert_id: CertIdRef<'a>,
    cert_status: x509_ocsp::CertStatus,
    this_update: x509_ocsp::OcspGeneralizedTime,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    next_update: Option<x509_ocsp::OcspGeneralizedTime>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    single_extensions: Option<AnyRef<'a>>,
}

/// What the OCSP lint checks, as read from a ResponseData.
#[derive(Debug, PartialEq, Eq)]
struct OcspFacts<'a> {
    version_v1: bool,
    /// The ResponderID's key hash, if it is by key.
    responder_key_hash: Option<&'a [u8]>,
    produced_at: u64,
    responses: Vec<SingleFacts<'a>>,
    extensions: Vec<(ObjectIdentifier, bool, &'a [u8])>,
}

/// What the OCSP lint checks of one SingleResponse.
#[derive(Debug, PartialEq, Eq)]
struct SingleFacts<'a> {
    this_update: u64,
    next_update: Option<u64>,
    /// The CertID's serial, INTEGER content octets.
    serial: &'a [u8],
    unknown: bool,
    revoked_at: Option<u64>,
    single_extensions: bool,
}

/// Checks a ResponseData: v1, responder by key, producedAt inside the signer's validity, for
/// every SingleResponse thisUpdate <= nextUpdate inside it too and a revocation time not
/// after producedAt, only a non-critical nonce of 1 to 32 octets as response extension, no
/// single extensions. OCSP times are GeneralizedTime by definition (RFC 6960).
///
/// The exact bytes are read without copying: the shape Herald's encoder writes by a reader of
/// that shape alone, anything else by the general decoder (a test checks that both read the
/// same facts).
pub(crate) fn ocsp_response(tbs: &[u8], expect: &OcspExpectation<'_>) -> Result<(), LintError> {
    let facts = match ocsp_facts_common_shape(tbs) {
        Some(facts) => facts,
        None => ocsp_facts(tbs)?,
    };
    check_ocsp(&facts, expect)
}

/// The facts of any ResponseData, with the general decoder.
fn ocsp_facts(tbs: &[u8]) -> Result<OcspFacts<'_>, LintError> {
    use x509_ocsp::{CertStatus, Version};
    let data = ResponseDataRef::from_der(tbs).map_err(|e| parse_err(OCSP, e))?;
    let secs = |t: &x509_ocsp::OcspGeneralizedTime| t.0.to_unix_duration().as_secs();
    // ResponderID byKey: [2] EXPLICIT KeyHash (OCTET STRING).
    let by_key = data.responder_id.tag()
        == der::Tag::ContextSpecific {
            constructed: true,
            number: der::TagNumber::N2,
        };
    let responses = data
        .responses
        .iter()
        .map(|single| SingleFacts {
            this_update: secs(&single.this_update),
            next_update: single.next_update.as_ref().map(secs),
            serial: single.cert_id.serial_number.as_bytes(),
            unknown: matches!(single.cert_status, CertStatus::Unknown(_)),
            revoked_at: match &single.cert_status {
                CertStatus::Revoked(info) => Some(secs(&info.revocation_time)),
                _ => None,
            },
            single_extensions: single.single_extensions.is_some(),
        })
        .collect();
    Ok(OcspFacts {
        version_v1: data.version == Version::V1,
        responder_key_hash: by_key
            .then(|| OctetStringRef::from_der(data.responder_id.value()).ok())
            .flatten()
            .map(|hash| hash.as_bytes()),
        produced_at: secs(&data.produced_at),
        responses,
        extensions: data
            .response_extensions
            .iter()
            .flatten()
            .map(|e| (e.id, e.critical, e.value.as_bytes()))
            .collect(),
    })
}

/// The facts of a ResponseData in the shape Herald's encoder writes (v1 by default, responder
/// by key, CertIDs with absent or NULL hash parameters, every SingleResponse with a
/// nextUpdate and without extensions, at most nonce extensions), read without a general
/// decoder: the facts [`ocsp_facts`] reads (times with x509-ocsp's own type), or `None` for
/// any other shape.
fn ocsp_facts_common_shape(tbs: &[u8]) -> Option<OcspFacts<'_>> {
    let (data, after) = take_der(tbs, 0x30)?;
    let (responder, fields) = take_der(data, 0xa2)?;
    let (responder_key_hash, after_hash) = take_der(responder, 0x04)?;
    let (produced_at, fields) = take_time(fields)?;
    let (mut list, extensions_field) = take_der(fields, 0x30)?;
    if !after.is_empty() || !after_hash.is_empty() {
        return None;
    }
    let mut responses = Vec::with_capacity(1);
    while !list.is_empty() {
        let (single, next) = take_der(list, 0x30)?;
        list = next;
        let (cert_id, fields) = take_der(single, 0x30)?;
        let (algorithm, id_fields) = take_der(cert_id, 0x30)?;
        let (oid, parameters) = take_der(algorithm, 0x06)?;
        ObjectIdentifier::from_bytes(oid).ok()?;
        let (_, id_fields) = take_der(id_fields, 0x04)?;
        let (_, id_fields) = take_der(id_fields, 0x04)?;
        let (serial, id_fields) = take_der(id_fields, 0x02)?;
        let canonical = !matches!(
            serial,
            [] | [0x00, 0x00..=0x7f, ..] | [0xff, 0x80..=0xff, ..]
        ) && serial.len() <= MAX_DECODED_SERIAL_OCTETS;
        if !matches!(parameters, [] | [0x05, 0x00]) || !id_fields.is_empty() || !canonical {
            return None;
        }
        let (unknown, revoked_at, fields) = match fields {
            [0x80, 0x00, rest @ ..] => (false, None, rest),
            [0x82, 0x00, rest @ ..] => (true, None, rest),
            _ => {
                let (info, rest) = take_der(fields, 0xa1)?;
                let (revoked_at, reason) = take_time(info)?;
                // An optional [0] EXPLICIT CRLReason, one of RFC 5280's codes.
                match reason {
                    [] => {}
                    [0xa0, 0x03, 0x0a, 0x01, code] => {
                        x509_cert::ext::pkix::CrlReason::from_der(&[0x0a, 0x01, *code]).ok()?;
                    }
                    _ => return None,
                }
                (false, Some(revoked_at), rest)
            }
        };
        let (this_update, fields) = take_time(fields)?;
        let (next, after_next) = take_der(fields, 0xa0)?;
        let (next_update, after_time) = take_time(next)?;
        if !after_next.is_empty() || !after_time.is_empty() {
            return None;
        }
        responses.push(SingleFacts {
            this_update,
            next_update: Some(next_update),
            serial,
            unknown,
            revoked_at,
            single_extensions: false,
        });
    }
    let mut extensions = Vec::new();
    if !extensions_field.is_empty() {
        let (explicit, after) = take_der(extensions_field, 0xa1)?;
        let (mut list, after_list) = take_der(explicit, 0x30)?;
        if !after.is_empty() || !after_list.is_empty() || list.is_empty() {
            return None;
        }
        while !list.is_empty() {
            let (extension, next) = take_der(list, 0x30)?;
            list = next;
            let (oid, fields) = take_der(extension, 0x06)?;
            if oid != rfc6960::ID_PKIX_OCSP_NONCE.as_bytes() {
                return None;
            }
            let (critical, fields) = match fields.strip_prefix(&[0x01, 0x01, 0xff]) {
                Some(rest) => (true, rest),
                None => (false, fields),
            };
            let (value, after_value) = take_der(fields, 0x04)?;
            if !after_value.is_empty() {
                return None;
            }
            extensions.push((rfc6960::ID_PKIX_OCSP_NONCE, critical, value));
        }
    }
    Some(OcspFacts {
        version_v1: true,
        responder_key_hash: Some(responder_key_hash),
        produced_at,
        responses,
        extensions,
    })
}

/// Reads a GeneralizedTime from the front of `input` with x509-ocsp's type: Unix seconds, and
/// what follows.
fn take_time(input: &[u8]) -> Option<(u64, &[u8])> {
    let (_, rest) = take_der(input, 0x18)?;
    let tlv = input.get(..input.len() - rest.len())?;
    let time = x509_ocsp::OcspGeneralizedTime::from_der(tlv).ok()?;
    Some((time.0.to_unix_duration().as_secs(), rest))
}

/// Reads a DER value tagged `tag` from the front of `input`: its content, and what follows.
/// Definite lengths in their shortest form (as DER requires) below 65,536; anything else is
/// `None`. For readers of one known shape, which leave anything else to a general decoder.
pub(crate) fn take_der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (len, rest) = match input {
        [found, short @ 0..=0x7f, rest @ ..] if *found == tag => (usize::from(*short), rest),
        [found, 0x81, one @ 0x80..=0xff, rest @ ..] if *found == tag => (usize::from(*one), rest),
        [found, 0x82, high @ 0x01..=0xff, low, rest @ ..] if *found == tag => {
            (usize::from(*high) << 8 | usize::from(*low), rest)
        }
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// The OCSP profile's checks, on the facts of a ResponseData.
fn check_ocsp(data: &OcspFacts<'_>, expect: &OcspExpectation<'_>) -> Result<(), LintError> {
    if !data.version_v1 {
        return Err(refuse(OCSP, "version is not v1"));
    }
    if data.responder_key_hash != Some(expect.responder_key_hash) {
        return Err(refuse(OCSP, "responder ID is not the signer's key hash"));
    }
    let (from, until) = expect.signer_validity;
    let produced = data.produced_at;
    if produced < from || produced > until {
        return Err(refuse(OCSP, "producedAt outside the signer's validity"));
    }
    if data.responses.is_empty() {
        return Err(refuse(OCSP, "no responses"));
    }
    for single in &data.responses {
        let next_update = single
            .next_update
            .ok_or_else(|| refuse(OCSP, "no nextUpdate"))?;
        if single.this_update > next_update || single.this_update > produced {
            return Err(refuse(OCSP, "thisUpdate after nextUpdate or producedAt"));
        }
        if next_update > until {
            return Err(refuse(OCSP, "nextUpdate after the signer expires"));
        }
        check_serial(OCSP, single.serial).or_else(|e| {
            // Unknown serials are echoed as asked (RFC 6960 §4.2.2.3); only their sign
            // and size are the requester's business. Known ones were checked at issuance.
            if single.unknown {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        if single.revoked_at.is_some_and(|at| at > produced) {
            return Err(refuse(OCSP, "revocationTime after producedAt"));
        }
        if single.single_extensions {
            return Err(refuse(OCSP, "single extensions are not in the profile"));
        }
    }
    for (id, critical, value) in &data.extensions {
        // RFC 9654: an OCTET STRING of 1 to 32 octets; a nonce some clients (older OpenSSL)
        // send as raw bytes is echoed as sent, so its raw length counts.
        let len = OctetStringRef::from_der(value).map_or(value.len(), |n| n.as_bytes().len());
        if *id != rfc6960::ID_PKIX_OCSP_NONCE || *critical || !(1..=MAX_NONCE).contains(&len) {
            return Err(refuse(
                OCSP,
                format!("response extension {id} not in the profile"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_follow_rfc5280_utc_through_2049_generalized_from_2050() {
        // 2049-12-31T23:59:59Z and 2050-01-01T00:00:00Z.
        let last_utc = 2_524_607_999;
        assert!(matches!(rfc5280_time(last_utc).unwrap(), Time::UtcTime(_)));
        assert!(matches!(
            rfc5280_time(last_utc + 1).unwrap(),
            Time::GeneralTime(_)
        ));
        assert!(matches!(
            rfc5280_time(1_780_000_000).unwrap(),
            Time::UtcTime(_)
        ));
        assert!(rfc5280_time(-1).is_err());
        let general_2026 = Time::GeneralTime(
            GeneralizedTime::from_unix_duration(Duration::from_secs(1_780_000_000)).unwrap(),
        );
        assert!(check_time(CRL, "thisUpdate", &general_2026).is_err());
    }

    #[test]
    fn dns_names_need_a_domain_and_preferred_syntax() {
        for good in [
            "bars-host-0001.endpoints.herald.internal",
            "relay.site.example",
            "a1.b2.internal",
        ] {
            assert_eq!(check_dns_name(good, false), Ok(()), "{good}");
        }
        for bad in [
            "bars-host-0001",
            "localhost",
            "Upper.example",
            "a..b",
            "-a.example",
            "a-.example",
            "a.123",
            "a_b.example",
            &format!("{}.example", "x".repeat(64)),
            &format!("{}.example", "x.".repeat(124)),
        ] {
            assert!(check_dns_name(bad, false).is_err(), "{bad}");
        }
        assert_eq!(check_dns_name("localhost", true), Ok(()));
    }

    const NOW: u64 = 1_780_000_000;

    fn facts() -> IssuerFacts {
        IssuerFacts {
            subject: x509_cert::name::Name::default().to_der().unwrap(),
            key_id: Some(vec![7; 20]),
            not_before: NOW - 86_400,
            not_after: NOW + 365 * 86_400,
        }
    }

    fn sig_alg() -> spki::AlgorithmIdentifierOwned {
        spki::AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        }
    }

    fn ext(id: ObjectIdentifier, critical: bool, value: Vec<u8>) -> x509_cert::ext::Extension {
        x509_cert::ext::Extension {
            extn_id: id,
            critical,
            extn_value: der::asn1::OctetString::new(value).unwrap(),
        }
    }

    /// A TBSCertList like Herald's, with one entry whose reasonCode is `reason`, tweaked by
    /// `tweak`; returns the lint's verdict.
    fn lint_crl(
        reason: u8,
        tweak: impl FnOnce(&mut x509_cert::crl::TbsCertList),
    ) -> Result<(), LintError> {
        let issuer = facts();
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(der::asn1::OctetString::new(vec![7; 20]).unwrap()),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let mut tbs = x509_cert::crl::TbsCertList {
            version: x509_cert::Version::V2,
            signature: sig_alg(),
            issuer: x509_cert::name::Name::default(),
            this_update: rfc5280_time(NOW as i64).unwrap(),
            next_update: Some(rfc5280_time(NOW as i64 + 86_400).unwrap()),
            revoked_certificates: Some(vec![x509_cert::crl::RevokedCert {
                serial_number: x509_cert::serial_number::SerialNumber::new(&[0x42; 16]).unwrap(),
                revocation_date: rfc5280_time(NOW as i64 - 60).unwrap(),
                crl_entry_extensions: Some(vec![ext(
                    oids::ID_CE_CRL_REASONS,
                    false,
                    vec![0x0a, 0x01, reason],
                )]),
            }]),
            crl_extensions: Some(vec![
                ext(
                    oids::ID_CE_AUTHORITY_KEY_IDENTIFIER,
                    false,
                    aki.to_der().unwrap(),
                ),
                ext(oids::ID_CE_CRL_NUMBER, false, vec![0x02, 0x01, 0x05]),
            ]),
        };
        tweak(&mut tbs);
        crl(
            &tbs.to_der().unwrap(),
            &issuer,
            &sig_alg().to_der().unwrap(),
        )
    }

    #[test]
    fn crl_profile_accepts_herald_crls_and_refuses_each_fault() {
        for reason in CRL_REASONS {
            assert_eq!(lint_crl(reason, |_| {}), Ok(()), "reason {reason}");
        }
        let general = |unix: u64| {
            Time::GeneralTime(
                GeneralizedTime::from_unix_duration(Duration::from_secs(unix)).unwrap(),
            )
        };
        type Tweak = Box<dyn FnOnce(&mut x509_cert::crl::TbsCertList)>;
        let faults: [(&str, u8, Tweak); 8] = [
            (
                "GeneralizedTime thisUpdate in 2026",
                1,
                Box::new(move |t| t.this_update = general(NOW)),
            ),
            (
                "GeneralizedTime nextUpdate in 2026",
                1,
                Box::new(move |t| t.next_update = Some(general(NOW + 86_400))),
            ),
            (
                "GeneralizedTime revocationDate in 2026",
                1,
                Box::new(move |t| {
                    if let Some(e) = t.revoked_certificates.as_mut().and_then(|v| v.first_mut()) {
                        e.revocation_date = general(NOW - 60);
                    }
                }),
            ),
            ("unspecified reason code", 0, Box::new(|_| {})),
            ("removeFromCRL in a full CRL", 8, Box::new(|_| {})),
            ("no nextUpdate", 1, Box::new(|t| t.next_update = None)),
            (
                "version 1",
                1,
                Box::new(|t| t.version = x509_cert::Version::V1),
            ),
            (
                "critical CRL number",
                1,
                Box::new(|t| {
                    if let Some(e) = t.crl_extensions.as_mut().and_then(|v| v.get_mut(1)) {
                        e.critical = true;
                    }
                }),
            ),
        ];
        for (fault, reason, tweak) in faults {
            assert!(lint_crl(reason, tweak).is_err(), "{fault}");
        }
    }

    fn lint_ocsp(nonce: Option<(bool, Vec<u8>)>) -> Result<(), LintError> {
        use x509_ocsp::{
            CertId, CertStatus, OcspGeneralizedTime, ResponderId, ResponseData, SingleResponse,
            Version,
        };
        let gtime = |unix: u64| {
            OcspGeneralizedTime(
                GeneralizedTime::from_unix_duration(Duration::from_secs(unix)).unwrap(),
            )
        };
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(der::asn1::OctetString::new(vec![9; 20]).unwrap()),
            produced_at: gtime(NOW),
            responses: vec![SingleResponse {
                cert_id: CertId {
                    hash_algorithm: spki::AlgorithmIdentifierOwned {
                        oid: const_oid::db::rfc5912::ID_SHA_256,
                        parameters: None,
                    },
                    issuer_name_hash: der::asn1::OctetString::new(vec![1; 32]).unwrap(),
                    issuer_key_hash: der::asn1::OctetString::new(vec![2; 32]).unwrap(),
                    serial_number: x509_cert::serial_number::SerialNumber::new(&[0x42; 16])
                        .unwrap(),
                },
                cert_status: CertStatus::good(),
                this_update: gtime(NOW),
                next_update: Some(gtime(NOW + 3600)),
                single_extensions: None,
            }],
            response_extensions: nonce.map(|(critical, value)| {
                vec![ext(
                    rfc6960::ID_PKIX_OCSP_NONCE,
                    critical,
                    der::asn1::OctetString::new(value)
                        .unwrap()
                        .to_der()
                        .unwrap(),
                )]
            }),
        };
        ocsp_response(
            &data.to_der().unwrap(),
            &OcspExpectation {
                responder_key_hash: &[9; 20],
                signer_validity: (NOW - 60, NOW + 86_400),
            },
        )
    }

    /// ResponseData in Herald's shape, with `statuses` (status, revocation time, reason) and
    /// `nonce`, as x509-ocsp encodes them.
    fn ocsp_tbs(statuses: &[(u8, Option<u8>)], nonce: Option<Vec<u8>>, critical: bool) -> Vec<u8> {
        use x509_ocsp::{
            CertId, CertStatus, OcspGeneralizedTime, ResponderId, ResponseData, RevokedInfo,
            SingleResponse, Version,
        };
        let gtime = |unix: u64| {
            OcspGeneralizedTime(
                GeneralizedTime::from_unix_duration(Duration::from_secs(unix)).unwrap(),
            )
        };
        let responses = statuses
            .iter()
            .enumerate()
            .map(|(i, (status, reason))| SingleResponse {
                cert_id: CertId {
                    hash_algorithm: spki::AlgorithmIdentifierOwned {
                        oid: if i % 2 == 0 {
                            rfc5912::ID_SHA_1
                        } else {
                            rfc5912::ID_SHA_256
                        },
                        parameters: (i % 3 != 0).then(der::asn1::Any::null),
                    },
                    issuer_name_hash: der::asn1::OctetString::new(vec![1; 20]).unwrap(),
                    issuer_key_hash: der::asn1::OctetString::new(vec![2; 20]).unwrap(),
                    serial_number: x509_cert::serial_number::SerialNumber::new(
                        &[0x80 | i as u8; 16],
                    )
                    .unwrap(),
                },
                cert_status: match status {
                    0 => CertStatus::good(),
                    1 => CertStatus::revoked(RevokedInfo {
                        revocation_time: gtime(NOW - 30),
                        revocation_reason: reason.map(|code| {
                            x509_cert::ext::pkix::CrlReason::from_der(&[0x0a, 0x01, code]).unwrap()
                        }),
                    }),
                    _ => CertStatus::unknown(),
                },
                this_update: gtime(NOW),
                next_update: Some(gtime(NOW + 3600)),
                single_extensions: None,
            })
            .collect();
        ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(der::asn1::OctetString::new(vec![9; 20]).unwrap()),
            produced_at: gtime(NOW),
            responses,
            response_extensions: nonce
                .map(|value| vec![ext(rfc6960::ID_PKIX_OCSP_NONCE, critical, value)]),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn ocsp_lint_reads_herald_shape_as_the_general_decoder_does() {
        let wrapped = der::asn1::OctetString::new(vec![7; 16])
            .unwrap()
            .to_der()
            .unwrap();
        let reasons = [None, Some(0), Some(1), Some(4), Some(9), Some(10)];
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for (i, reason) in reasons.iter().enumerate() {
            samples.push(ocsp_tbs(&[(1, *reason)], None, false));
            samples.push(ocsp_tbs(
                &[(0, None), (1, *reason), (2, None)],
                Some(wrapped.clone()),
                i % 2 == 0,
            ));
        }
        samples.push(ocsp_tbs(&[(0, None)], Some(vec![0xee; 32]), false));
        samples.push(ocsp_tbs(&[(2, None); 16], Some(vec![1; 33]), false));
        let expect = OcspExpectation {
            responder_key_hash: &[9; 20],
            signer_validity: (NOW - 60, NOW + 86_400),
        };
        let mut common = 0;
        let mut state = 0x2545_f491_u32;
        for sample in &samples {
            let fast = ocsp_facts_common_shape(sample);
            assert!(fast.is_some(), "Herald's shape is read by the fast reader");
            let mut variants: Vec<Vec<u8>> =
                (0..sample.len()).map(|n| sample[..n].to_vec()).collect();
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let mut bytes = sample.clone();
                let at = state as usize % bytes.len();
                bytes[at] ^= (state >> 24) as u8 | 1;
                variants.push(bytes);
            }
            variants.push(sample.clone());
            for bytes in &variants {
                if let Some(fast) = ocsp_facts_common_shape(bytes) {
                    assert_eq!(Ok(fast), ocsp_facts(bytes), "{bytes:02x?}");
                    common += 1;
                }
            }
            // The verdicts of the profile on the unchanged samples.
            let verdict = ocsp_response(sample, &expect);
            assert_eq!(
                verdict.is_ok(),
                check_ocsp(&ocsp_facts(sample).unwrap(), &expect).is_ok()
            );
        }
        assert!(common > 1000, "{common}");
    }

    #[test]
    fn ocsp_profile_accepts_responses_and_refuses_bad_nonces() {
        assert_eq!(lint_ocsp(None), Ok(()));
        assert_eq!(lint_ocsp(Some((false, vec![1; 32]))), Ok(()));
        assert!(
            lint_ocsp(Some((true, vec![1; 16]))).is_err(),
            "critical nonce"
        );
        assert!(
            lint_ocsp(Some((false, vec![1; 33]))).is_err(),
            "nonce over 32 octets"
        );
        assert!(lint_ocsp(Some((false, Vec::new()))).is_err(), "empty nonce");
    }

    #[test]
    fn serials_must_be_positive_nonzero_and_at_most_20_octets() {
        assert!(check_serial(CERT, &[0x01]).is_ok());
        assert!(check_serial(CERT, &[0x00, 0x80]).is_ok());
        assert!(check_serial(CERT, &[0x80]).is_err(), "negative");
        assert!(check_serial(CERT, &[0x00]).is_err(), "zero");
        assert!(check_serial(CERT, &[0x01; 21]).is_err(), "21 octets");
        assert!(check_serial(CERT, &[]).is_err());
    }
}
