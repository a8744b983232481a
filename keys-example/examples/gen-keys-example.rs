//! Regenerates Herald's EXAMPLE PKI and signing keys in `keys-example/`.
//!
//! ```text
//! cargo run -p herald-keys-example --example gen-keys-example
//! ```
//!
//! Every file written starts with a banner saying it is an example that must never be used in
//! production. PEM readers (openssl, Python `cryptography`, rustls-pemfile) skip text before
//! the `-----BEGIN` line, so the files stay usable by every tool.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use herald_keys_example::{ca_params, leaf_params};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use time::{Date, Duration, OffsetDateTime};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Days the example end-entity certificates stay valid (the CAs: 10 and 20 years).
const LEAF_DAYS: i64 = 5 * 365;

/// The banner of every file; for the PKI files, with the day the example certificates expire.
fn banner(expires: Option<Date>) -> String {
    let mut text = String::from(
        "# EXAMPLE ONLY - NEVER USE IN PRODUCTION.\n\
         # This file belongs to Herald's example keys (keys-example/), published with the source code.\n",
    );
    match expires {
        Some(day) => text.push_str(&format!(
            "# Anyone can read its private keys. The example certificates expire on {day}\n\
             # (the CA certificates later); regenerate them before then with:\n"
        )),
        None => text.push_str("# Anyone can read its private keys. Regenerate with:\n"),
    }
    text.push_str("#   cargo run -p herald-keys-example --example gen-keys-example\n");
    text
}

/// OID of id-pkix-ocsp-nocheck (RFC 6960 section 4.2.2.2.1).
const OCSP_NOCHECK_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

fn main() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let pki = dir.join("pki");
    let signing = dir.join("signing");
    fs::create_dir_all(&pki)?;
    fs::create_dir_all(&signing)?;
    let now = OffsetDateTime::now_utc();
    let pki_banner = banner(Some((now + Duration::days(LEAF_DAYS)).date()));
    let signing_banner = banner(None);

    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut root = ca_params("Herald EXAMPLE Root CA", now, 20 * 365)?;
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    write_pem(
        &pki_banner,
        &pki.join("root-ca.key.pem"),
        &root_key.serialize_pem(),
    )?;
    let root = CertifiedIssuer::self_signed(root, root_key)?;
    write_pem(&pki_banner, &pki.join("root-ca.crt.pem"), &root.pem())?;

    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut inter = ca_params("Herald EXAMPLE Intermediate CA", now, 10 * 365)?;
    inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    write_pem(
        &pki_banner,
        &pki.join("intermediate-ca.key.pem"),
        &inter_key.serialize_pem(),
    )?;
    let inter = CertifiedIssuer::signed_by(inter, inter_key, &root)?;
    write_pem(
        &pki_banner,
        &pki.join("intermediate-ca.crt.pem"),
        &inter.pem(),
    )?;

    let mut client = leaf_params("EXAMPLE-LAPTOP-0001", now, LEAF_DAYS)?;
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf(&pki_banner, &pki, "client", &client, &inter)?;

    let mut ocsp = leaf_params("Herald EXAMPLE OCSP Responder", now, LEAF_DAYS)?;
    ocsp.subject_alt_names.clear();
    ocsp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    ocsp.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    ocsp.custom_extensions = vec![CustomExtension::from_oid_content(
        OCSP_NOCHECK_OID,
        vec![0x05, 0x00],
    )];
    leaf(&pki_banner, &pki, "ocsp-signer", &ocsp, &inter)?;

    let mut server = leaf_params("localhost", now, LEAF_DAYS)?;
    server.subject_alt_names = vec![
        rcgen::SanType::DnsName("localhost".try_into()?),
        rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
    ];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf(&pki_banner, &pki, "server", &server, &inter)?;

    let mut chain = inter.pem();
    chain.push_str(&root.pem());
    write_pem(&pki_banner, &pki.join("chain.pem"), &chain)?;

    for role in ["root", "targets", "snapshot", "timestamp", "release"] {
        signing_key(&signing_banner, &signing, role)?;
    }
    println!("example keys written to {}", dir.display());
    Ok(())
}

/// Writes an end-entity key and certificate issued by `issuer`.
fn leaf(
    banner: &str,
    dir: &Path,
    name: &str,
    params: &CertificateParams,
    issuer: &CertifiedIssuer<'_, KeyPair>,
) -> Result<()> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, issuer)?;
    write_pem(
        banner,
        &dir.join(format!("{name}.key.pem")),
        &key.serialize_pem(),
    )?;
    write_pem(banner, &dir.join(format!("{name}.crt.pem")), &cert.pem())
}

/// Writes an example Ed25519 manifest-signing key pair (PKCS#8 v1 private key, SPKI public
/// key).
///
/// The generator produces a PKCS#8 v2 document (RFC 5958, public key included), which
/// OpenSSL 3.0 refuses for Ed25519; the v1 form (RFC 8410 section 7) carries the same seed and
/// every tool reads it.
fn signing_key(banner: &str, dir: &Path, role: &str) -> Result<()> {
    /// PKCS#8 v1 prefix for Ed25519: SEQUENCE, version 0, AlgorithmIdentifier id-Ed25519,
    /// OCTET STRING { OCTET STRING (32 bytes) }.
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let v2 = key.serialized_der();
    // In the v2 document the seed follows the same 16-byte prefix, with other lengths.
    let seed = v2.get(16..48).ok_or("unexpected PKCS#8 layout")?;
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", v1));
    write_pem(banner, &dir.join(format!("{role}.key.pem")), &private)?;
    write_pem(
        banner,
        &dir.join(format!("{role}.pub.pem")),
        &key.public_key_pem(),
    )
}

/// Writes the banner then the PEM text.
fn write_pem(banner: &str, path: &Path, pem: &str) -> Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(banner.as_bytes())?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
