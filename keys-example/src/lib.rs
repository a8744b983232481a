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

#![forbid(unsafe_code)]

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
