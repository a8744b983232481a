//! Herald's EXAMPLE keys and certificates, for demos and tests.
//!
//! **Never use these in production**: their private keys are published with the source code.
//! Every file starts with a banner that says so. Regenerate them with
//! `cargo run -p herald-keys-example --example gen-keys-example`.
//!
//! The example PKI (ECDSA P-256): a root CA, an intermediate CA, a client certificate for
//! `EXAMPLE-LAPTOP-0001` (clientAuth), a delegated OCSP signer (id-kp-OCSPSigning,
//! ocsp-nocheck) and a `localhost` server certificate, all issued by the intermediate. The
//! example manifest-signing keys are Ed25519, one per TUF role plus the release key.
//!
//! The example certificates are valid for five years from the day they were generated (the
//! CA certificates longer): those committed now expire on 2031-11-20, as each PKI file's
//! banner says. Regenerate them before then with the command above. Tests that run a live TLS server
//! do not depend on that date: they use [`ephemeral::TlsServerPki`], made at run time.

#![forbid(unsafe_code)]

use rcgen::{CertificateParams, DnType, IsCa, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use std::path::PathBuf;

/// The folder holding the example files.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Paths of the example PKI files (PEM with a leading "EXAMPLE ONLY" banner).
pub mod pki {
    use std::path::PathBuf;

    fn file(name: &str) -> PathBuf {
        super::dir().join("pki").join(name)
    }

    /// Root CA certificate.
    pub fn root_ca_cert() -> PathBuf {
        file("root-ca.crt.pem")
    }
    /// Root CA private key (PKCS#8).
    pub fn root_ca_key() -> PathBuf {
        file("root-ca.key.pem")
    }
    /// Intermediate CA certificate.
    pub fn intermediate_ca_cert() -> PathBuf {
        file("intermediate-ca.crt.pem")
    }
    /// Intermediate CA private key (PKCS#8).
    pub fn intermediate_ca_key() -> PathBuf {
        file("intermediate-ca.key.pem")
    }
    /// Intermediate then root certificate.
    pub fn chain() -> PathBuf {
        file("chain.pem")
    }
    /// Client certificate for `EXAMPLE-LAPTOP-0001`.
    pub fn client_cert() -> PathBuf {
        file("client.crt.pem")
    }
    /// Client private key (PKCS#8).
    pub fn client_key() -> PathBuf {
        file("client.key.pem")
    }
    /// Delegated OCSP signing certificate.
    pub fn ocsp_signer_cert() -> PathBuf {
        file("ocsp-signer.crt.pem")
    }
    /// OCSP signing private key (PKCS#8).
    pub fn ocsp_signer_key() -> PathBuf {
        file("ocsp-signer.key.pem")
    }
    /// Server certificate for `localhost` and 127.0.0.1.
    pub fn server_cert() -> PathBuf {
        file("server.crt.pem")
    }
    /// Server private key (PKCS#8).
    pub fn server_key() -> PathBuf {
        file("server.key.pem")
    }
}

/// Paths of the example Ed25519 manifest-signing keys (PKCS#8 private, SPKI public).
pub mod signing {
    use std::path::PathBuf;

    /// The TUF and release roles that have an example key.
    pub const ROLES: [&str; 5] = ["root", "targets", "snapshot", "timestamp", "release"];

    /// The example private key of a role (`ROLES`).
    pub fn private_key(role: &str) -> PathBuf {
        super::dir().join("signing").join(format!("{role}.key.pem"))
    }

    /// The example public key of a role (`ROLES`).
    pub fn public_key(role: &str) -> PathBuf {
        super::dir().join("signing").join(format!("{role}.pub.pem"))
    }
}

/// Parameters of an example CA certificate: subject `O=Herald EXAMPLE, CN=cn`, valid from an
/// hour before `now` for `days` days, with the usages of a CA.
pub fn ca_params(
    cn: &str,
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Herald EXAMPLE");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Parameters of an example end-entity certificate for the DNS name `cn`, valid from an hour
/// before `now` for `days` days (usages are left to the caller).
pub fn leaf_params(
    cn: &str,
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = ca_params(cn, now, days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.subject_alt_names = vec![rcgen::SanType::DnsName(cn.try_into()?)];
    Ok(params)
}

/// A TLS server PKI made at run time, valid from an hour ago for a week: a root CA and a
/// `localhost` / 127.0.0.1 server certificate it issued. For tests and benchmarks that run a
/// live HTTPS server, so they do not depend on the committed example PKI's validity dates.
pub mod ephemeral {
    use std::path::{Path, PathBuf};

    use rcgen::{
        CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };
    use time::OffsetDateTime;

    /// Days the ephemeral certificates stay valid.
    const VALID_DAYS: i64 = 7;

    /// PEM texts of a fresh root CA and of a `localhost` server certificate it issued.
    #[derive(Debug, Clone)]
    pub struct TlsServerPki {
        /// The root CA certificate: the trust anchor for the server.
        pub root_pem: String,
        /// The server certificate (the root issued it directly).
        pub cert_pem: String,
        /// The server's private key (PKCS#8).
        pub key_pem: String,
    }

    /// Where [`TlsServerPki::write`] put the files.
    #[derive(Debug, Clone)]
    pub struct TlsServerFiles {
        /// The root CA certificate.
        pub root: PathBuf,
        /// The server certificate.
        pub cert: PathBuf,
        /// The server's private key.
        pub key: PathBuf,
    }

    impl TlsServerPki {
        /// Makes a new root and server certificate, valid from an hour ago for a week.
        pub fn localhost() -> Result<Self, rcgen::Error> {
            let now = OffsetDateTime::now_utc();
            let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut root = super::ca_params("Herald EXAMPLE Test Root CA", now, VALID_DAYS)?;
            root.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
            let root = CertifiedIssuer::self_signed(root, root_key)?;

            let mut server = super::leaf_params("localhost", now, VALID_DAYS)?;
            server
                .subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
            server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = server.signed_by(&key, &root)?;
            Ok(TlsServerPki {
                root_pem: root.pem(),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        }

        /// Writes `root.crt.pem`, `server.crt.pem` and `server.key.pem` into `dir`.
        pub fn write(&self, dir: &Path) -> std::io::Result<TlsServerFiles> {
            let files = TlsServerFiles {
                root: dir.join("root.crt.pem"),
                cert: dir.join("server.crt.pem"),
                key: dir.join("server.key.pem"),
            };
            std::fs::write(&files.root, &self.root_pem)?;
            std::fs::write(&files.cert, &self.cert_pem)?;
            std::fs::write(&files.key, &self.key_pem)?;
            Ok(files)
        }
    }
}
