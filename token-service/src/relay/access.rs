//! Who may fetch from the relay what the CA keeps for its own clients: the relay is as strict
//! as the CA. Repository files need a client certificate of this CA (the TLS layer verified
//! the chain against the pinned root) that the CRL does not list as revoked.
//!
//! The CRL comes from the upstream and is refreshed in the background. Its signature,
//! issuer and nextUpdate are checked by webpki on each request against the pinned root and
//! the issuing CA from the discovery document; a CRL older than the one held is ignored (an
//! upstream cannot roll revocations back). Without a CRL, or once it is past its nextUpdate,
//! requests are refused: the relay fails closed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use der::Decode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

use super::RelayError;
use crate::http::ClientCertificate;
use crate::refusal::Refusal;

/// The revocation data in force.
struct Loaded {
    verifier: Arc<dyn ClientCertVerifier>,
    intermediates: Vec<CertificateDer<'static>>,
    this_update: SystemTime,
    next_update: SystemTime,
}

/// Checks clients against the pinned root and the freshest CRL from the upstream.
pub(super) struct ClientCheck {
    roots: Arc<RootCertStore>,
    loaded: RwLock<Option<Arc<Loaded>>>,
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn identity_err(what: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::Identity(format!("{what}: {e}"))
}

impl ClientCheck {
    /// A check trusting the root(s) in `root_pem`, with no revocation data yet.
    pub(super) fn new(root_pem: &str) -> Result<Self, RelayError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            let cert = cert.map_err(|e| identity_err("pinned root", e))?;
            roots
                .add(cert)
                .map_err(|e| identity_err("pinned root", e))?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            loaded: RwLock::new(None),
        })
    }

    /// Puts a CRL (DER) from the upstream in force, with the issuing CA certificates
    /// (`intermediate_pem`) clients chain through. A CRL whose thisUpdate is older than the
    /// one in force is refused. Returns the CRL's nextUpdate.
    pub(super) fn install(
        &self,
        crl_der: &[u8],
        intermediate_pem: &str,
    ) -> Result<SystemTime, RelayError> {
        let crl = x509_cert::crl::CertificateList::from_der(crl_der)
            .map_err(|e| identity_err("CRL", e))?;
        let this_update = crl.tbs_cert_list.this_update.to_system_time();
        let next_update = crl
            .tbs_cert_list
            .next_update
            .ok_or_else(|| RelayError::Identity("CRL: no nextUpdate".into()))?
            .to_system_time();
        let intermediates = CertificateDer::pem_slice_iter(intermediate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| identity_err("issuing CA certificate", e))?;
        if intermediates.is_empty() {
            return Err(RelayError::Identity(
                "the upstream's discovery document names no issuing CA".into(),
            ));
        }
        if let Some(current) = self.current() {
            if this_update < current.this_update {
                return Err(RelayError::Identity(format!(
                    "CRL: thisUpdate {} is older than the one in force",
                    herald_token_client::rfc3339(unix_seconds(this_update))
                )));
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls([CertificateRevocationListDer::from(crl_der.to_vec())])
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| identity_err("CRL", e))?;
        let loaded = Loaded {
            verifier,
            intermediates,
            this_update,
            next_update,
        };
        if let Ok(mut guard) = self.loaded.write() {
            *guard = Some(Arc::new(loaded));
        }
        Ok(next_update)
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded.read().ok().and_then(|g| g.clone())
    }

    /// Lets a client through only with a valid certificate of this CA that the CRL in force
    /// does not list; refuses all clients when there is no CRL or it is past its nextUpdate.
    pub(super) fn check(&self, client: Option<&ClientCertificate>) -> Result<(), Refusal> {
        let client = client.ok_or_else(|| {
            Refusal::new(
                401,
                "client_certificate_required",
                "this needs a client certificate issued by this CA (mutual TLS)",
            )
        })?;
        let stale = || {
            Refusal::new(
                503,
                "revocation_data_stale",
                "the relay has no current revocation data from its upstream; try again later",
            )
        };
        let loaded = self.current().ok_or_else(stale)?;
        let now = SystemTime::now();
        if now >= loaded.next_update {
            return Err(stale());
        }
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let end_entity = CertificateDer::from(client.0.as_slice());
        match loaded.verifier.verify_client_cert(
            &end_entity,
            &loaded.intermediates,
            UnixTime::since_unix_epoch(since_epoch),
        ) {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => Err(Refusal::new(
                403,
                "certificate_revoked",
                "the client certificate is revoked",
            )),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredRevocationList
                | CertificateError::ExpiredRevocationListContext { .. }
                | CertificateError::UnknownRevocationStatus,
            )) => Err(stale()),
            Err(e) => {
                tracing::info!(error = %e, "refused a client certificate");
                Err(Refusal::new(
                    403,
                    "bad_certificate",
                    format!("the client certificate is not accepted: {e}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SerialNumber,
    };

    struct Pki {
        root_pem: String,
        intermediate_pem: String,
        intermediate: Issuer<'static, KeyPair>,
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    }

    fn pki() -> Pki {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("test root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let key = KeyPair::generate().unwrap();
        let params = ca_params("test issuing CA");
        let intermediate = params.signed_by(&key, &root_issuer).unwrap();
        Pki {
            root_pem: root.pem(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(params, key),
        }
    }

    fn client(pki: &Pki, serial: u64) -> ClientCertificate {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("endpoint-{serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://ca.example/crl/intermediate.crl".into()],
        }];
        let cert = params.signed_by(&key, &pki.intermediate).unwrap();
        ClientCertificate(Arc::new(cert.der().to_vec()))
    }

    fn crl(pki: &Pki, revoked: &[u64], this_update_ago: i64, next_update_in: i64) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::seconds(this_update_ago),
            next_update: now + time::Duration::seconds(next_update_in),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::seconds(this_update_ago),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&pki.intermediate).unwrap().der().to_vec()
    }

    #[test]
    fn no_certificate_refused() {
        let pki = pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&pki, &[], 60, 3600), &pki.intermediate_pem)
            .unwrap();
        let refusal = check.check(None).unwrap_err();
        assert_eq!(refusal.code(), "client_certificate_required");
        assert_eq!(refusal.status(), 401);
    }

    #[test]
    fn valid_client_served_and_revoked_client_refused() {
        let pki = pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&pki, &[666], 60, 3600), &pki.intermediate_pem)
            .unwrap();
        check.check(Some(&client(&pki, 42))).unwrap();
        let refusal = check.check(Some(&client(&pki, 666))).unwrap_err();
        assert_eq!(refusal.code(), "certificate_revoked");
    }

    #[test]
    fn no_revocation_data_fails_closed() {
        let pki = pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        let refusal = check.check(Some(&client(&pki, 42))).unwrap_err();
        assert_eq!(refusal.code(), "revocation_data_stale");
        assert_eq!(refusal.status(), 503);
    }

    #[test]
    fn crl_past_next_update_fails_closed() {
        let pki = pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&pki, &[], 7200, -60), &pki.intermediate_pem)
            .unwrap();
        let refusal = check.check(Some(&client(&pki, 42))).unwrap_err();
        assert_eq!(refusal.code(), "revocation_data_stale");
    }

    #[test]
    fn crl_from_another_issuer_fails_closed() {
        let pki = pki();
        let other = self::pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&other, &[], 60, 3600), &pki.intermediate_pem)
            .unwrap();
        assert!(check.check(Some(&client(&pki, 42))).is_err());
    }

    #[test]
    fn client_of_another_ca_refused() {
        let pki = pki();
        let other = self::pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&pki, &[], 60, 3600), &pki.intermediate_pem)
            .unwrap();
        let refusal = check.check(Some(&client(&other, 42))).unwrap_err();
        assert_eq!(refusal.code(), "bad_certificate");
    }

    #[test]
    fn older_crl_cannot_replace_a_newer_one() {
        let pki = pki();
        let check = ClientCheck::new(&pki.root_pem).unwrap();
        check
            .install(&crl(&pki, &[666], 60, 3600), &pki.intermediate_pem)
            .unwrap();
        assert!(check
            .install(&crl(&pki, &[], 600, 3600), &pki.intermediate_pem)
            .is_err());
        let refusal = check.check(Some(&client(&pki, 666))).unwrap_err();
        assert_eq!(refusal.code(), "certificate_revoked");
    }
}
