//! Scenarios of the authority core, through the library: issuance policy, transactional
//! recording, OCSP answers (cache, nonce, several CertIDs, bad input) and Ed25519 CAs.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use der::asn1::{Any, OctetString};
use der::{Decode, Encode};
use herald_ca::store::{read_tx, write_tx, EndpointGroupRecord, ListFilter, StoreError};
use herald_ca::{
    init, Authority, CaKeyType, InitOptions, IssueError, KeyAccess, KeyProtection, Passphrase,
    Reason, RevokeTarget,
};
use herald_wire::Group;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

const PASS: &str = "scenario passphrase";

fn new_ca(key_type: CaKeyType) -> (tempfile::TempDir, Authority) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    init(
        &dir,
        &InitOptions {
            name: "Scenario".into(),
            key_type,
            protection: KeyProtection::Encrypted {
                passphrase: Passphrase::new(PASS).unwrap(),
                iterations: 1000,
            },
            listen: addr,
            http_listen: Some(addr),
            public_url: "http://ca.example".into(),
            tls_names: vec!["localhost".into()],
            name_domain: "endpoints.herald.internal".into(),
        },
        &herald_ca::open_configured_store,
    )
    .unwrap();
    let authority = Authority::open(
        &dir,
        &KeyAccess {
            passphrase: Some(Passphrase::new(PASS).unwrap()),
        },
        herald_ca::open_store(&dir).unwrap(),
    )
    .unwrap();
    (tmp, authority)
}

fn csr(alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["admin.evil.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "root-of-everything");
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn parse(pem: &str) -> Certificate {
    let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
    Certificate::from_der(&der).unwrap()
}

#[test]
fn issued_certificate_follows_policy_not_the_request() {
    let (_tmp, ca) = new_ca(CaKeyType::EcdsaP256);
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let issued = ca
        .issue(
            csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
            "LAPTOP-ACME-0042",
            "endpoint",
            "test",
        )
        .unwrap();
    let cert = parse(&issued.certificate_pem);
    let tbs = &cert.tbs_certificate;
    // The group (none recorded for the name: `default`) rides as the organizational unit.
    assert_eq!(
        tbs.subject.to_string(),
        "CN=LAPTOP-ACME-0042,OU=default,O=Scenario"
    );
    let exts = tbs.extensions.as_ref().unwrap();
    let has = |oid: &str| exts.iter().any(|e| e.extn_id.to_string() == oid);
    assert!(has("2.5.29.37"), "extended key usage");
    assert!(has("1.3.6.1.5.5.7.1.1"), "authority information access");
    assert!(has("2.5.29.31"), "CRL distribution point");
    let san = exts
        .iter()
        .find(|e| e.extn_id.to_string() == "2.5.29.17")
        .unwrap();
    let san_text = String::from_utf8_lossy(san.extn_value.as_bytes());
    // The allocated name under the CA's name domain, lower-cased as DNS names are written;
    // the common name keeps the short name.
    assert!(
        san_text.contains("laptop-acme-0042.endpoints.herald.internal")
            && !san_text.contains("evil"),
        "{san_text}"
    );
    let eku = exts
        .iter()
        .find(|e| e.extn_id.to_string() == "2.5.29.37")
        .unwrap();
    // id-kp-clientAuth 1.3.6.1.5.5.7.3.2
    assert!(eku
        .extn_value
        .as_bytes()
        .ends_with(&[0x2b, 6, 1, 5, 5, 7, 3, 2]));

    let serial = tbs.serial_number.as_bytes();
    assert!(serial.len() >= 16 && serial.len() <= 17, "128-bit serial");
    assert!(serial[0] & 0x80 == 0, "positive serial");

    let nb = tbs.validity.not_before.to_unix_duration().as_secs() as i64;
    let na = tbs.validity.not_after.to_unix_duration().as_secs() as i64;
    assert!(nb <= before - 4 * 60, "notBefore backdated for clock skew");
    assert!(
        (na - nb) <= 90 * 24 * 3600 + 5 * 60 + 5,
        "lifetime from the profile"
    );

    // Recorded before it was returned.
    let stored = ca.certificate(&issued.record.serial).unwrap().unwrap();
    assert_eq!(stored.der, cert.to_der().unwrap());
}

#[test]
fn lifetime_capped_by_the_issuer() {
    let (tmp, _) = new_ca(CaKeyType::EcdsaP256);
    let dir = tmp.path().join("ca");
    let config_path = dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    // A profile asking for 100 years.
    let text = text.replacen("validity_hours = 2160", "validity_hours = 876000", 1);
    std::fs::write(&config_path, text).unwrap();
    let ca = Authority::open(
        &dir,
        &KeyAccess {
            passphrase: Some(Passphrase::new(PASS).unwrap()),
        },
        herald_ca::open_store(&dir).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue(
            csr(&rcgen::PKCS_ED25519).as_bytes(),
            "long-lived",
            "endpoint",
            "test",
        )
        .unwrap();
    let leaf = parse(&issued.certificate_pem);
    let issuer = Certificate::from_der(ca.intermediate_der()).unwrap();
    assert!(
        leaf.tbs_certificate.validity.not_after.to_unix_duration()
            <= issuer.tbs_certificate.validity.not_after.to_unix_duration()
    );
}

#[test]
fn refused_requests_leave_no_record() {
    let (_tmp, ca) = new_ca(CaKeyType::EcdsaP256);
    let err = ca
        .issue(b"not a csr", "x-1", "endpoint", "test")
        .unwrap_err();
    assert!(matches!(err, IssueError::Csr(_)));
    let err = ca
        .issue(
            csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
            "bad name!",
            "endpoint",
            "test",
        )
        .unwrap_err();
    assert!(matches!(err, IssueError::Policy(_)));
    let err = ca
        .issue(
            csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
            "x-1",
            "no-such-profile",
            "test",
        )
        .unwrap_err();
    assert!(matches!(err, IssueError::Policy(_)));
    // A failing extra write in the issuing transaction (as a burnt token would be) rolls the
    // certificate back too.
    let err = ca
        .issue_with(
            csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
            "x-2",
            "endpoint",
            "test",
            &mut |_, _| Err(StoreError::Corrupt("token already used".into())),
        )
        .unwrap_err();
    assert!(matches!(err, IssueError::Store(_)));
    let endpoint_certs = ca
        .list(&ListFilter::default())
        .unwrap()
        .into_iter()
        .filter(|c| c.profile == "endpoint")
        .count();
    assert_eq!(endpoint_certs, 0);
}

#[test]
fn issued_client_certificate_carries_the_group_recorded_for_its_name_server_none() {
    let (_tmp, ca) = new_ca(CaKeyType::EcdsaP256);
    write_tx(ca.store(), |tx| {
        tx.set_endpoint_group(&EndpointGroupRecord {
            name: "kiosk-0007".into(),
            group: Group::new("kiosks").unwrap(),
            changed_at: 1,
        })
    })
    .unwrap();
    let subject = |name: &str, profile: &str| {
        let issued = ca
            .issue(
                csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
                name,
                profile,
                "test",
            )
            .unwrap();
        parse(&issued.certificate_pem)
            .tbs_certificate
            .subject
            .to_string()
    };
    assert_eq!(
        subject("kiosk-0007", "endpoint"),
        "CN=kiosk-0007,OU=kiosks,O=Scenario"
    );
    assert_eq!(
        subject("relay-0001", "relay"),
        "CN=relay-0001,OU=default,O=Scenario"
    );
    assert_eq!(
        subject("relay.site.example", "server"),
        "CN=relay.site.example,O=Scenario",
        "server certificates carry no group"
    );
}

fn cert_id(ca: &Authority, serial: &[u8], sha256: bool) -> CertId {
    let issuer = Certificate::from_der(ca.intermediate_der()).unwrap();
    let name = issuer.tbs_certificate.subject.to_der().unwrap();
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let (alg, oid) = if sha256 {
        (&ring::digest::SHA256, "2.16.840.1.101.3.4.2.1")
    } else {
        (&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, "1.3.14.3.2.26")
    };
    CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: oid.parse().unwrap(),
            parameters: Some(Any::null()),
        },
        issuer_name_hash: OctetString::new(ring::digest::digest(alg, &name).as_ref()).unwrap(),
        issuer_key_hash: OctetString::new(ring::digest::digest(alg, &key).as_ref()).unwrap(),
        serial_number: x509_cert::serial_number::SerialNumber::new(serial).unwrap(),
    }
}

fn request(ids: Vec<CertId>, nonce: Option<&[u8]>) -> Vec<u8> {
    let request_extensions = nonce.map(|n| {
        vec![x509_cert::ext::Extension {
            extn_id: "1.3.6.1.5.5.7.48.1.2".parse().unwrap(),
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).unwrap().to_der().unwrap()).unwrap(),
        }]
    });
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
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

fn basic(der: &[u8]) -> BasicOcspResponse {
    let resp = OcspResponse::from_der(der).unwrap();
    assert_eq!(resp.response_status, OcspResponseStatus::Successful);
    BasicOcspResponse::from_der(resp.response_bytes.unwrap().response.as_bytes()).unwrap()
}

fn serial_der_bytes(ca: &Authority, name: &str) -> Vec<u8> {
    let issued = ca
        .issue(
            csr(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(),
            name,
            "endpoint",
            "test",
        )
        .unwrap();
    parse(&issued.certificate_pem)
        .tbs_certificate
        .serial_number
        .as_bytes()
        .to_vec()
}

#[test]
fn ocsp_cache_nonce_and_multiple_cert_ids() {
    let (_tmp, ca) = new_ca(CaKeyType::EcdsaP256);
    let a = serial_der_bytes(&ca, "host-a");
    let b = serial_der_bytes(&ca, "host-b");

    // Same request twice without nonce: the same pre-signed bytes, with caching facts.
    let req = request(vec![cert_id(&ca, &a, true)], None);
    let first = ca.ocsp_respond(&req);
    let second = ca.ocsp_respond(&req);
    assert_eq!(first.der, second.der);
    assert!(first.cache.is_some());

    // A nonce gets a fresh response echoing it, never cached.
    let nonce = [7u8; 16];
    let with_nonce = ca.ocsp_respond(&request(vec![cert_id(&ca, &a, false)], Some(&nonce)));
    assert!(with_nonce.cache.is_none());
    let echoed = basic(&with_nonce.der).tbs_response_data.nonce().unwrap();
    assert_eq!(echoed.0.as_bytes(), nonce);

    // An over-long nonce (RFC 9654: at most 32 octets) is malformed.
    let long = ca.ocsp_respond(&request(vec![cert_id(&ca, &a, false)], Some(&[1u8; 33])));
    assert_eq!(&long.der[..], [0x30, 0x03, 0x0a, 0x01, 0x01]);

    // After revocation the cached answer is replaced.
    ca.revoke(
        &RevokeTarget::Name("host-a".into()),
        Reason::KeyCompromise,
        "test",
    )
    .unwrap();
    let after = ca.ocsp_respond(&req);
    assert_ne!(after.der, first.der);
    let single = &basic(&after.der).tbs_response_data.responses[0];
    assert!(matches!(single.cert_status, CertStatus::Revoked(_)));

    // Several CertIDs, SHA-1 and SHA-256 mixed, plus a serial never issued.
    let multi = ca.ocsp_respond(&request(
        vec![
            cert_id(&ca, &a, false),
            cert_id(&ca, &b, true),
            cert_id(&ca, &[0x01, 0x02, 0x03], true),
        ],
        None,
    ));
    let responses = basic(&multi.der).tbs_response_data.responses;
    assert!(matches!(responses[0].cert_status, CertStatus::Revoked(_)));
    assert!(matches!(responses[1].cert_status, CertStatus::Good(_)));
    assert!(matches!(responses[2].cert_status, CertStatus::Unknown(_)));
}

#[test]
fn malformed_der_ocsp_requests_never_panic() {
    let (_tmp, ca) = new_ca(CaKeyType::EcdsaP256);
    let a = serial_der_bytes(&ca, "host-a");
    let valid = request(vec![cert_id(&ca, &a, false)], Some(&[1, 2, 3]));
    // Every truncation and a deterministic walk of single-byte corruptions.
    for len in 0..valid.len() {
        let answer = ca.ocsp_respond(&valid[..len]);
        assert_eq!(
            &answer.der[..],
            [0x30, 0x03, 0x0a, 0x01, 0x01],
            "truncated at {len}"
        );
    }
    let mut state = 0x2545_f491_u32;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let mut bytes = valid.clone();
        let pos = (state as usize) % bytes.len();
        bytes[pos] ^= (state >> 24) as u8 | 1;
        let answer = ca.ocsp_respond(&bytes);
        let status = OcspResponse::from_der(&answer.der).unwrap().response_status;
        assert!(matches!(
            status,
            OcspResponseStatus::Successful
                | OcspResponseStatus::MalformedRequest
                | OcspResponseStatus::Unauthorized
        ));
    }
    let too_many = request((0..17).map(|_| cert_id(&ca, &a, true)).collect(), None);
    assert_eq!(
        &ca.ocsp_respond(&too_many).der[..],
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
}

#[test]
fn ed25519_ca_issues_and_signs_crl_and_ocsp() {
    let (_tmp, ca) = new_ca(CaKeyType::Ed25519);
    let a = serial_der_bytes(&ca, "edge-1");
    let answer = ca.ocsp_respond(&request(vec![cert_id(&ca, &a, true)], None));
    let b = basic(&answer.der);
    assert_eq!(b.signature_algorithm.oid.to_string(), "1.3.101.112");
    ca.revoke(
        &RevokeTarget::Name("edge-1".into()),
        Reason::Superseded,
        "test",
    )
    .unwrap();
    let crl = ca.current_crl().unwrap();
    let parsed = x509_cert::crl::CertificateList::from_der(&crl.der).unwrap();
    assert_eq!(parsed.tbs_cert_list.revoked_certificates.unwrap().len(), 1);
    let numbers: Vec<u64> = (0..3).map(|_| ca.publish_crl().unwrap().number).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    let audit = read_tx(ca.store(), |tx| {
        let mut n = 0;
        tx.for_each_audit(&mut |_| n += 1)?;
        Ok::<_, StoreError>(n)
    })
    .unwrap();
    assert!(audit >= 3, "init, issue and revoke are audited");
}
