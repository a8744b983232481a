//! The authority core: CA set-up, issuance, revocation, CRLs and OCSP answers.
//!
//! It does no HTTP: the server's handlers and the CLI call it. Everything it changes goes
//! through the [`Store`] in one transaction per operation, together with the audit entry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use der::{Decode, Encode};
use herald_wire::Group;
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use serde::Serialize;
use time::OffsetDateTime;

use crate::core::config::{
    CaSection, Config, ConfigError, CrlSection, DataLayout, OcspSection, ServerSection,
};
use crate::core::crl::CrlError;
use crate::core::csr::{self, CsrError};
use crate::core::keys::{self, CaKeyType, KeyError, KeyProtection, Passphrase};
use crate::core::lint::{self, CertProfile, IssuerFacts, LintError, SignError, Signer};
use crate::core::metrics::Metrics;
use crate::core::ocsp::{IssuerIds, OcspResponder};
use crate::core::policy::{self, PolicyError, Profile, BACKDATE_MINUTES, DEFAULT_PROFILE};
use crate::model::audit::NewAuditEntry;
use crate::model::encoding::pem_certificate;
use crate::model::revocation::Reason;
use crate::model::serial::Serial;
use crate::store::{
    read_tx, write_tx, CertRecord, ListFilter, Revocation, RevokeOutcome, Store, StoreError,
    StoredCrl,
};
use herald_token_client::sha256_hex;

/// The identifier of the online issuing CA (used in URLs and the store).
pub const ISSUER_ID: &str = "intermediate";

/// Errors setting up or opening the authority.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum SetupError {
    /// `init` on a folder that already holds a CA.
    #[error("{0} already holds a CA (config.toml exists); refusing to overwrite it")]
    AlreadyInitialised(std::path::PathBuf),
    /// The data folder could not be created or read.
    #[error("cannot use data folder {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building a CA certificate failed.
    #[error("cannot build the {what} certificate: {detail}")]
    Certificate { what: &'static str, detail: String },
    /// The random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The pre-signing lint refused a certificate.
    #[error(transparent)]
    Lint(#[from] LintError),
}

/// Errors issuing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The request is malformed or its signature is wrong.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The policy refuses it.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The issuer expires too soon to issue anything.
    #[error("the issuing CA expires too soon to issue a certificate")]
    IssuerExpiring,
    /// Signing failed.
    #[error("cannot sign the certificate: {0}")]
    Sign(String),
    /// The pre-signing lint refused the certificate: nothing was signed or recorded.
    #[error(transparent)]
    Lint(#[from] LintError),
    /// Recording failed: the certificate was not issued.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors revoking.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// No certificate has this serial or name.
    #[error("no certificate matches {0}")]
    NotFound(String),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The new CRL could not be produced (the revocation itself is recorded).
    #[error(transparent)]
    Crl(#[from] CrlError),
}

/// Options of `herald-ca init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Organisation name in CA subjects.
    pub name: String,
    /// CA key algorithm.
    pub key_type: CaKeyType,
    /// How keys are protected at rest.
    pub protection: KeyProtection,
    /// HTTPS listener.
    pub listen: SocketAddr,
    /// Plain-HTTP listener (OCSP, CRL).
    pub http_listen: Option<SocketAddr>,
    /// Base URL for OCSP/CRL/AIA in certificates.
    pub public_url: String,
    /// DNS names and IP addresses of the server's TLS certificate.
    pub tls_names: Vec<String>,
    /// The DNS domain of endpoint certificates (`[ca] name_domain`).
    pub name_domain: String,
}

/// What `init` created.
#[derive(Debug, Clone, Serialize)]
pub struct InitSummary {
    /// The data folder.
    pub data_dir: String,
    /// Root certificate SHA-256 fingerprint (hex), for endpoints to pin.
    pub root_fingerprint: String,
    /// Files written.
    pub files: Vec<String>,
}

/// A CA certificate with the facts derived from it.
#[derive(Debug)]
struct CaCert {
    der: Vec<u8>,
    not_after: i64,
    facts: IssuerFacts,
}

impl CaCert {
    fn from_der(der: Vec<u8>, what: &'static str) -> Result<Self, SetupError> {
        let cert = x509_cert::Certificate::from_der(&der).map_err(|e| SetupError::Certificate {
            what,
            detail: e.to_string(),
        })?;
        let not_after = cert
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs() as i64;
        let facts = IssuerFacts::from_cert_der(&der).map_err(|e| cert_error(what, e))?;
        Ok(Self {
            der,
            not_after,
            facts,
        })
    }
}

/// The authority: the online issuing CA, the OCSP signer and the store.
pub struct Authority {
    config: Config,
    layout: DataLayout,
    store: Arc<dyn Store>,
    root: CaCert,
    intermediate: CaCert,
    issuer_key: KeyPair,
    crl_issuer: crate::core::crl::CrlIssuer,
    ocsp: OcspResponder,
    crl: RwLock<Option<Arc<PublishedCrl>>>,
    seen_epoch: AtomicI64,
    passphrase: Option<Passphrase>,
    /// Counters for the metrics endpoint.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("data_dir", &self.layout.dir())
            .finish_non_exhaustive()
    }
}

/// A CRL ready to serve.
#[derive(Debug)]
pub struct PublishedCrl {
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// CRL number.
    pub number: u64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
    /// Strong ETag (quoted).
    pub etag: String,
}

impl PublishedCrl {
    fn from_stored(crl: StoredCrl) -> Self {
        let etag = format!("\"crl-{}\"", crl.number);
        Self {
            der: crl.der,
            number: crl.number,
            this_update: crl.this_update,
            next_update: crl.next_update,
            etag,
        }
    }
}

/// An issued certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The record as stored.
    #[serde(flatten)]
    pub record: CertRecord,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The issuing CA chain (intermediate, root), PEM.
    pub chain_pem: String,
}

/// Which certificates to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// One certificate.
    Serial(Serial),
    /// Every unrevoked certificate with this name.
    Name(String),
}

impl RevokeTarget {
    /// A hexadecimal string is taken as a serial if such a certificate exists, otherwise as a
    /// name.
    pub fn parse(authority: &Authority, text: &str) -> Result<Self, StoreError> {
        if let Ok(serial) = Serial::from_hex(text) {
            if authority.certificate(&serial)?.is_some() {
                return Ok(RevokeTarget::Serial(serial));
            }
        }
        Ok(RevokeTarget::Name(text.to_owned()))
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn to_offset(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ca_params(
    cn: &str,
    org: &str,
    key: &KeyPair,
    path_len: u8,
    validity_days: i64,
    not_after_cap: Option<i64>,
) -> Result<CertificateParams, SetupError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?.into_rcgen());
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(lint::key_identifier(key));
    let start = now() - time::Duration::minutes(BACKDATE_MINUTES);
    params.not_before = start;
    let mut end = now() + time::Duration::days(validity_days);
    if let Some(cap) = not_after_cap {
        end = end.min(to_offset(cap));
    }
    params.not_after = end;
    Ok(params)
}

fn cert_error(what: &'static str, e: impl std::fmt::Display) -> SetupError {
    SetupError::Certificate {
        what,
        detail: e.to_string(),
    }
}

/// The Subject Key Identifier extension of an end-entity certificate (rcgen writes one only
/// into CA certificates), with the key identifier every Herald certificate uses.
fn subject_key_identifier(key: &dyn PublicKeyData) -> Result<CustomExtension, String> {
    let id = der::asn1::OctetString::new(lint::key_identifier(&KeyRef(key)))
        .and_then(|o| o.to_der())
        .map_err(|e| e.to_string())?;
    Ok(CustomExtension::from_oid_content(&[2, 5, 29, 14], id))
}

/// A borrowed public key.
struct KeyRef<'a>(&'a dyn PublicKeyData);

impl PublicKeyData for KeyRef<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl CaCert {
    /// This CA as the signer of a certificate.
    fn signer<'a>(&'a self, key: &'a KeyPair) -> Signer<'a> {
        Signer::Ca {
            cert_der: &self.der,
            facts: &self.facts,
            key,
        }
    }
}

fn sign_error(what: &'static str, e: SignError) -> SetupError {
    match e {
        SignError::Lint(e) => SetupError::Lint(e),
        SignError::Build(detail) => SetupError::Certificate { what, detail },
    }
}

fn random_serial() -> Result<Serial, SetupError> {
    crate::model::serial::random().map_err(|_| SetupError::Random)
}

/// A serial as rcgen takes it (`Serial` is the wire type of `herald-wire`).
trait IntoRcgen {
    fn into_rcgen(self) -> rcgen::SerialNumber;
}

impl IntoRcgen for Serial {
    fn into_rcgen(self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(self.as_bytes())
    }
}

/// The OCSP no-check extension (RFC 6960 §4.2.2.2.1): the responder's own certificate is not
/// checked for revocation.
fn ocsp_nocheck() -> CustomExtension {
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 5], vec![0x05, 0x00])
}

/// Opens the store a configuration names (the composition root's choice of backend).
pub type OpenStore<'a> = &'a dyn Fn(&Config, &DataLayout) -> Result<Arc<dyn Store>, StoreError>;

/// Creates a new CA in `dir`: root, online intermediate, OCSP signer, server TLS certificate,
/// store (opened with `open_store`) and configuration. Refuses to overwrite an existing CA.
pub fn init(
    dir: &Path,
    opts: &InitOptions,
    open_store: OpenStore<'_>,
) -> Result<InitSummary, SetupError> {
    let layout = DataLayout::new(dir);
    if layout.config().exists() {
        return Err(SetupError::AlreadyInitialised(dir.to_path_buf()));
    }
    create_private_dir(dir)?;
    let org = opts.name.as_str();

    crate::core::config::check_name_domain(&opts.name_domain).map_err(|detail| {
        SetupError::Config(ConfigError::Parse {
            path: layout.config(),
            detail: format!("name domain: {detail}"),
        })
    })?;
    let root_key = keys::generate(opts.key_type)?;
    let root_params = ca_params(&format!("{org} Root CA"), org, &root_key, 1, 20 * 365, None)?;
    let root_cert = lint::sign_certificate(
        &root_params,
        &root_key,
        Signer::SelfSigned(&root_key),
        CertProfile::Root,
    )
    .map_err(|e| sign_error("root", e))?;
    let root = CaCert::from_der(root_cert.der().to_vec(), "root")?;

    let int_key = keys::generate(opts.key_type)?;
    let int_params = ca_params(
        &format!("{org} Issuing CA"),
        org,
        &int_key,
        0,
        5 * 365,
        Some(root.not_after),
    )?;
    let int_cert = lint::sign_certificate(
        &int_params,
        &int_key,
        root.signer(&root_key),
        CertProfile::IssuingCa,
    )
    .map_err(|e| sign_error("intermediate", e))?;
    let intermediate = CaCert::from_der(int_cert.der().to_vec(), "intermediate")?;

    let config = Config {
        ca: CaSection {
            name: opts.name.clone(),
            key_type: opts.key_type,
            insecure_unencrypted_keys: matches!(
                opts.protection,
                KeyProtection::InsecureUnencrypted
            ),
            name_domain: opts.name_domain.clone(),
        },
        server: ServerSection {
            listen: opts.listen,
            http_listen: opts.http_listen,
            public_url: opts.public_url.trim_end_matches('/').to_owned(),
            client_auth: Default::default(),
            max_connections: crate::core::config::default_max_connections(),
            max_connections_per_client: crate::core::config::default_max_connections_per_client(),
            header_timeout_secs: crate::core::config::default_header_timeout(),
            handshake_timeout_secs: crate::core::config::default_handshake_timeout(),
            request_timeout_secs: crate::core::config::default_request_timeout(),
            min_response_rate: crate::core::config::default_min_response_rate(),
        },
        crl: CrlSection::default(),
        ocsp: OcspSection::default(),
        store: Default::default(),
        enrollment: Default::default(),
        token_policy: Default::default(),
        enrollment_limits: Default::default(),
        metrics: Default::default(),
        console: Default::default(),
        repository: None,
        profiles: BTreeMap::from([
            (DEFAULT_PROFILE.to_owned(), Profile::endpoint()),
            ("server".to_owned(), Profile::server()),
            // Relays: an endpoint-like identity that may forward endpoints' renewals.
            (
                herald_token_service::RELAY_PROFILE.to_owned(),
                Profile::endpoint(),
            ),
        ]),
    };

    // Write keys and certificates first, the configuration last: a folder with config.toml is
    // a complete CA.
    keys::write_key(&layout.key("root"), &root_key, &opts.protection)?;
    keys::write_key(&layout.key(ISSUER_ID), &int_key, &opts.protection)?;
    crate::core::audit::AuditSigner::create(&layout, &opts.protection)?;
    write_cert(&layout, "root", &pem_certificate(&root.der))?;
    write_cert(&layout, ISSUER_ID, &pem_certificate(&intermediate.der))?;

    let store = open_store(&config, &layout)?;

    // The delegated OCSP signer and the server's TLS certificate come from the intermediate and
    // are recorded like any certificate.
    let services = ServiceContext {
        layout: &layout,
        issuer_key: &int_key,
        intermediate: &intermediate,
        config: &config,
        protection: &opts.protection,
    };
    let ocsp_cert = services.create(ServiceKind::Ocsp)?;
    let tls_cert = services.create(ServiceKind::Tls(&opts.tls_names))?;
    write_tx(store.as_ref(), |tx| {
        tx.insert_certificate(&ocsp_cert)?;
        tx.insert_certificate(&tls_cert)?;
        tx.append_audit(&NewAuditEntry::now(
            "cli",
            "init",
            serde_json::json!({
                "key_type": opts.key_type.to_string(),
                "encrypted_keys": !config.ca.insecure_unencrypted_keys,
                "root_fingerprint": sha256_hex(&root.der),
                "ocsp_signer_serial": ocsp_cert.serial.to_hex(),
                "tls_serial": tls_cert.serial.to_hex(),
            }),
        ))?;
        Ok::<_, StoreError>(())
    })?;
    config.save(&layout.config())?;

    Ok(InitSummary {
        data_dir: dir.display().to_string(),
        root_fingerprint: sha256_hex(&root.der),
        files: [
            "config.toml",
            "herald.db",
            "root.crt",
            "root.key",
            "intermediate.crt",
            "intermediate.key",
            "ocsp.crt",
            "ocsp.key",
            "tls.crt",
            "tls.key",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

fn create_private_dir(dir: &Path) -> Result<(), SetupError> {
    let err = |source| SetupError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn write_cert(layout: &DataLayout, name: &str, pem: &str) -> Result<(), SetupError> {
    let path = layout.cert(name);
    herald_files::write_public(&path, pem.as_bytes())
        .map_err(|source| SetupError::DataDir { path, source })
}

/// A certificate the CA issues to itself.
#[derive(Debug, Clone, Copy)]
pub enum ServiceKind<'a> {
    /// The delegated OCSP signer (`ocsp.crt`, `ocsp.key`).
    Ocsp,
    /// The HTTPS server's certificate for these names (`tls.crt`, `tls.key`).
    Tls(&'a [String]),
}

/// What creating a service certificate needs.
struct ServiceContext<'a> {
    layout: &'a DataLayout,
    issuer_key: &'a KeyPair,
    intermediate: &'a CaCert,
    config: &'a Config,
    protection: &'a KeyProtection,
}

impl ServiceContext<'_> {
    /// Generates a key, issues the certificate and writes both files; the caller records the
    /// certificate.
    fn create(&self, kind: ServiceKind<'_>) -> Result<CertRecord, SetupError> {
        let org = &self.config.ca.name;
        let (file, key_type, cn) = match kind {
            ServiceKind::Ocsp => (
                "ocsp",
                self.config.ca.key_type,
                format!("{org} OCSP Responder"),
            ),
            ServiceKind::Tls(_) => (
                "tls",
                CaKeyType::EcdsaP256,
                format!("{org} herald-ca server"),
            ),
        };
        let key = keys::generate(key_type)?;
        let cert = issue_service_cert(
            self.issuer_key,
            self.intermediate,
            &key,
            &cn,
            kind,
            self.config,
        )?;
        let pem = match kind {
            ServiceKind::Ocsp => pem_certificate(&cert.der),
            ServiceKind::Tls(_) => {
                format!(
                    "{}{}",
                    pem_certificate(&cert.der),
                    pem_certificate(&self.intermediate.der)
                )
            }
        };
        keys::write_key(&self.layout.key(file), &key, self.protection)?;
        write_cert(self.layout, file, &pem)?;
        Ok(cert)
    }
}

fn issue_service_cert(
    issuer_key: &KeyPair,
    intermediate: &CaCert,
    key: &KeyPair,
    cn: &str,
    kind: ServiceKind<'_>,
    config: &Config,
) -> Result<CertRecord, SetupError> {
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, config.ca.name.as_str());
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(serial.clone().into_rcgen());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
        .custom_extensions
        .push(
            subject_key_identifier(key).map_err(|detail| SetupError::Certificate {
                what: "service",
                detail,
            })?,
        );
    let (profile, lint_profile) = match kind {
        ServiceKind::Ocsp => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
            params.custom_extensions.push(ocsp_nocheck());
            ("ocsp-signer", CertProfile::OcspSigner)
        }
        ServiceKind::Tls(names) => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.subject_alt_names = names
                .iter()
                .map(|n| match n.parse() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => n.to_ascii_lowercase().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()
                .map_err(|e: rcgen::Error| SetupError::Certificate {
                    what: "server TLS",
                    detail: e.to_string(),
                })?;
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![config.crl_url(ISSUER_ID)],
            }];
            ("server", CertProfile::EndEntity(policy::Usage::Server))
        }
    };
    let not_before = now() - time::Duration::minutes(BACKDATE_MINUTES);
    let not_after = (now() + time::Duration::days(365)).min(to_offset(intermediate.not_after));
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = lint::sign_certificate(&params, key, intermediate.signer(issuer_key), lint_profile)
        .map_err(|e| sign_error("service", e))?;
    Ok(CertRecord {
        serial,
        issuer: ISSUER_ID.to_owned(),
        name: cn.to_owned(),
        profile: profile.to_owned(),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        issued_at: crate::model::time::now_unix(),
        der: cert.der().to_vec(),
        revocation: None,
    })
}

/// Where the key passphrase comes from when opening the authority.
#[derive(Debug, Clone)]
pub struct KeyAccess {
    /// The passphrase, if any was given.
    pub passphrase: Option<Passphrase>,
}

impl Authority {
    /// Opens the CA in `dir` over `store`: configuration, intermediate and OCSP signer keys.
    pub fn open(dir: &Path, access: &KeyAccess, store: Arc<dyn Store>) -> Result<Self, SetupError> {
        let layout = DataLayout::new(dir);
        let config = Config::load(&layout.config())?;
        if config.ca.insecure_unencrypted_keys {
            tracing::warn!(
                "CA keys in {} are stored UNENCRYPTED (--insecure-unencrypted-keys); anyone who \
                 can read the folder can issue certificates",
                dir.display()
            );
        }
        let read_pem_cert = |name: &'static str| -> Result<CaCert, SetupError> {
            let path = layout.cert(name);
            let text = std::fs::read(&path).map_err(|source| SetupError::DataDir {
                path: path.clone(),
                source,
            })?;
            let (_, der) = der::pem::decode_vec(&text).map_err(|e| SetupError::Certificate {
                what: name,
                detail: e.to_string(),
            })?;
            CaCert::from_der(der, name)
        };
        let root = read_pem_cert("root")?;
        let intermediate = read_pem_cert(ISSUER_ID)?;
        let ocsp_cert = read_pem_cert("ocsp")?;
        let int_key = keys::read_key(&layout.key(ISSUER_ID), access.passphrase.as_ref())?;
        let ocsp_key = keys::read_key(&layout.key("ocsp"), access.passphrase.as_ref())?;
        let crl_issuer = crate::core::crl::CrlIssuer::new(&intermediate.der, &int_key)
            .map_err(|e| cert_error("intermediate", e))?;
        let ids = IssuerIds::from_cert_der(&intermediate.der)
            .map_err(|e| cert_error("intermediate", e))?;
        let ocsp = OcspResponder::new(
            ocsp_key,
            &ocsp_cert.der,
            ids,
            i64::from(config.ocsp.validity_minutes) * 60,
        )
        .map_err(|e| cert_error("OCSP signer", e))?;
        let epoch = read_tx(store.as_ref(), |tx| tx.status_epoch())?;

        Ok(Self {
            config,
            layout,
            store,
            root,
            intermediate,
            issuer_key: int_key,
            crl_issuer,
            ocsp,
            crl: RwLock::new(None),
            seen_epoch: AtomicI64::new(epoch),
            passphrase: access.passphrase.clone(),
            metrics: Metrics::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data folder layout.
    pub fn layout(&self) -> &DataLayout {
        &self.layout
    }

    /// The passphrase the keys were opened with (to read the server's TLS key).
    pub(crate) fn key_passphrase(&self) -> Option<&Passphrase> {
        self.passphrase.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The issuing CA certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// The OCSP responder.
    pub fn ocsp(&self) -> &OcspResponder {
        &self.ocsp
    }

    /// Issues a certificate for `name` from a PKCS#10 request (PEM or DER) under `profile`,
    /// recording it durably (with an audit entry by `actor`) before returning it.
    pub fn issue(
        &self,
        csr_input: &[u8],
        name: &str,
        profile_name: &str,
        actor: &str,
    ) -> Result<Issued, IssueError> {
        self.issue_with(csr_input, name, profile_name, actor, &mut |_, _| Ok(()))
    }

    /// Like [`Authority::issue`], and runs `extra` inside the same transaction that records
    /// the certificate (for example to burn the enrollment token that authorised it). If
    /// `extra` fails nothing is recorded and no certificate is returned. A certificate of a
    /// client profile carries the group the store records for `name` (renewal re-issues with
    /// the endpoint's current group).
    pub fn issue_with(
        &self,
        csr_input: &[u8],
        name: &str,
        profile_name: &str,
        actor: &str,
        extra: &mut dyn FnMut(&dyn crate::store::StoreTx, &CertRecord) -> Result<(), StoreError>,
    ) -> Result<Issued, IssueError> {
        let group = self.recorded_group(name, profile_name)?;
        self.issue_request(
            || csr::parse_and_verify(csr_input),
            name,
            &group,
            profile_name,
            actor,
            extra,
        )
    }

    /// The group a certificate of `profile_name` for `name` carries: for a client profile,
    /// the group the store records for `name`; none (the default group) otherwise.
    pub(crate) fn recorded_group(
        &self,
        name: &str,
        profile_name: &str,
    ) -> Result<Group, StoreError> {
        let client = self
            .config
            .profiles
            .get(profile_name)
            .is_some_and(|p| p.usage == policy::Usage::Client);
        if client {
            read_tx(self.store.as_ref(), |tx| {
                crate::core::groups::recorded_group(tx, name)
            })
        } else {
            Ok(Group::default())
        }
    }

    /// [`Authority::issue_with`] for a certificate in `group` (its Subject's
    /// organizationalUnitName; only client profiles carry one: a server profile refuses any
    /// group but the default one) and a request that `verify` parses and verifies (after the
    /// profile, the name and the group are checked), for a caller that may have verified it
    /// already.
    pub(crate) fn issue_request(
        &self,
        verify: impl FnOnce() -> Result<csr::VerifiedCsr, CsrError>,
        name: &str,
        group: &Group,
        profile_name: &str,
        actor: &str,
        extra: &mut dyn FnMut(&dyn crate::store::StoreTx, &CertRecord) -> Result<(), StoreError>,
    ) -> Result<Issued, IssueError> {
        let profile = self
            .config
            .profiles
            .get(profile_name)
            .ok_or_else(|| PolicyError::UnknownProfile(profile_name.to_owned()))?;
        policy::check_name(name)?;
        policy::check_group(profile, group)?;
        let csr = verify()?;
        profile.check_key(csr.key)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
            .map_err(|e| IssueError::Csr(CsrError::UnsupportedKey(e.to_string())))?;

        let issued_at = now();
        let not_before = issued_at - time::Duration::minutes(BACKDATE_MINUTES);
        let wanted = issued_at + time::Duration::hours(i64::from(profile.validity_hours));
        let not_after = wanted.min(to_offset(self.intermediate.not_after));
        if not_after <= issued_at {
            return Err(IssueError::IssuerExpiring);
        }
        let serial =
            crate::model::serial::random().map_err(|_| IssueError::Sign("random".into()))?;
        let params = self.leaf_params(
            name,
            group,
            profile,
            &serial,
            not_before,
            not_after,
            &public_key,
        )?;
        let der = self.sign_leaf(&params, &public_key, profile.usage, profile_name, actor)?;
        let record = CertRecord {
            serial,
            issuer: ISSUER_ID.to_owned(),
            name: name.to_owned(),
            profile: profile_name.to_owned(),
            not_before: not_before.unix_timestamp(),
            not_after: not_after.unix_timestamp(),
            issued_at: issued_at.unix_timestamp(),
            der,
            revocation: None,
        };
        write_tx(self.store.as_ref(), |tx| {
            tx.insert_certificate(&record)?;
            extra(tx, &record)?;
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "issue",
                serde_json::json!({
                    "serial": record.serial.to_hex(),
                    "name": name,
                    "group": (profile.usage == policy::Usage::Client).then_some(group),
                    "profile": profile_name,
                    "not_after": record.not_after,
                }),
            ))?;
            Ok::<_, StoreError>(())
        })?;
        self.metrics.issued.fetch_add(1, Ordering::Relaxed);
        Ok(Issued {
            certificate_pem: pem_certificate(&record.der),
            chain_pem: format!(
                "{}{}",
                pem_certificate(&self.intermediate.der),
                pem_certificate(&self.root.der)
            ),
            record,
        })
    }

    /// Signs a certificate of a profile once the pre-signing lint accepted it. A refusal is
    /// logged and recorded in the audit log (nothing else is stored) and returned.
    fn sign_leaf(
        &self,
        params: &CertificateParams,
        public_key: &dyn PublicKeyData,
        usage: policy::Usage,
        profile_name: &str,
        actor: &str,
    ) -> Result<Vec<u8>, IssueError> {
        let signer = self.intermediate.signer(&self.issuer_key);
        match lint::sign_certificate(params, public_key, signer, CertProfile::EndEntity(usage)) {
            Ok(cert) => Ok(cert.der().to_vec()),
            Err(SignError::Build(detail)) => Err(IssueError::Sign(detail)),
            Err(SignError::Lint(refusal)) => {
                let name = params
                    .distinguished_name
                    .get(&DnType::CommonName)
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                tracing::error!(%refusal, profile = profile_name, "certificate not issued");
                self.audit_refusal(
                    actor,
                    "issue-refused",
                    serde_json::json!({
                        "name": name,
                        "profile": profile_name,
                        "lint": refusal.problem,
                    }),
                );
                Err(IssueError::Lint(refusal))
            }
        }
    }

    /// Records a pre-signing lint refusal in the audit log (best effort: the refusal stands
    /// whether or not the store takes the entry).
    fn audit_refusal(&self, actor: &str, action: &str, detail: serde_json::Value) {
        let entry = NewAuditEntry::now(actor, action, detail);
        if let Err(e) = write_tx(self.store.as_ref(), |tx| tx.append_audit(&entry)) {
            tracing::error!(error = %e, action, "cannot record the lint refusal in the audit log");
        }
    }

    /// The subjectAltName dNSName of a certificate of `usage` for `name`: endpoint (client)
    /// names live under `[ca] name_domain`; a server profile's name is its host name.
    fn dns_name(&self, name: &str, usage: policy::Usage) -> Result<String, PolicyError> {
        let dns = match usage {
            policy::Usage::Client => format!(
                "{}.{}",
                name.to_ascii_lowercase(),
                self.config.ca.name_domain
            ),
            policy::Usage::Server => name.to_ascii_lowercase(),
        };
        // `localhost` is the one single-label name a server certificate may carry (local
        // set-ups and tests); pkilint flags it, see ARCHITECTURE.md.
        match lint::check_dns_name(&dns, usage == policy::Usage::Server) {
            Ok(()) => Ok(dns),
            Err(problem) => Err(PolicyError::BadDnsName { name: dns, problem }),
        }
    }

    #[allow(clippy::too_many_arguments)] // one value per part of the certificate
    fn leaf_params(
        &self,
        name: &str,
        group: &Group,
        profile: &Profile,
        serial: &Serial,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        public_key: &dyn PublicKeyData,
    ) -> Result<CertificateParams, IssueError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.config.ca.name.as_str());
        if profile.usage == policy::Usage::Client {
            // The endpoint's group, which it reads back from its own certificate.
            dn.push(DnType::OrganizationalUnitName, group.as_str());
        }
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let dns = self.dns_name(name, profile.usage)?;
        params.subject_alt_names = vec![SanType::DnsName(
            dns.try_into()
                .map_err(|e: rcgen::Error| IssueError::Sign(e.to_string()))?,
        )];
        params
            .custom_extensions
            .push(subject_key_identifier(public_key).map_err(IssueError::Sign)?);
        params.serial_number = Some(serial.clone().into_rcgen());
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match profile.usage {
            policy::Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            policy::Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.config.crl_url(ISSUER_ID)],
        }];
        params.custom_extensions.push(self.aia_extension()?);
        Ok(params)
    }

    fn aia_extension(&self) -> Result<CustomExtension, IssueError> {
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
        let uri = |s: String| {
            der::asn1::Ia5String::new(&s)
                .map(GeneralName::UniformResourceIdentifier)
                .map_err(|e| IssueError::Sign(format!("URL {s}: {e}")))
        };
        let aia = AuthorityInfoAccessSyntax(vec![
            AccessDescription {
                access_method: const_oid::db::rfc5912::ID_AD_OCSP,
                access_location: uri(self.config.ocsp_url())?,
            },
            AccessDescription {
                access_method: const_oid::db::rfc5912::ID_AD_CA_ISSUERS,
                access_location: uri(self.config.ca_issuers_url(ISSUER_ID))?,
            },
        ]);
        let der = aia.to_der().map_err(|e| IssueError::Sign(e.to_string()))?;
        Ok(CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            der,
        ))
    }

    /// The certificate with this serial.
    pub fn certificate(&self, serial: &Serial) -> Result<Option<CertRecord>, StoreError> {
        read_tx(self.store.as_ref(), |tx| tx.certificate(serial))
    }

    /// Certificates matching `filter`.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<CertRecord>, StoreError> {
        read_tx(self.store.as_ref(), |tx| tx.list_certificates(filter))
    }

    /// Revokes by serial or name, records it with an audit entry, then publishes a new CRL and
    /// makes OCSP answer `revoked`. Returns the certificates newly revoked (empty if they all
    /// were already revoked).
    pub fn revoke(
        &self,
        target: &RevokeTarget,
        reason: Reason,
        actor: &str,
    ) -> Result<Vec<CertRecord>, RevokeError> {
        let revocation = Revocation {
            revoked_at: crate::model::time::now_unix(),
            reason,
        };
        let revoked = write_tx(self.store.as_ref(), |tx| {
            let candidates = match target {
                RevokeTarget::Serial(serial) => tx.certificate(serial)?.into_iter().collect(),
                RevokeTarget::Name(name) => tx.list_certificates(&ListFilter {
                    name: Some(name.clone()),
                    revoked: None,
                    limit: None,
                })?,
            };
            if candidates.is_empty() {
                let what = match target {
                    RevokeTarget::Serial(s) => format!("serial {s}"),
                    RevokeTarget::Name(n) => format!("name {n}"),
                };
                return Err(RevokeError::NotFound(what));
            }
            let mut newly = Vec::new();
            for mut cert in candidates {
                if tx.revoke(&cert.serial, revocation)? == RevokeOutcome::Revoked {
                    tx.append_audit(&NewAuditEntry::now(
                        actor,
                        "revoke",
                        serde_json::json!({
                            "serial": cert.serial.to_hex(),
                            "name": cert.name,
                            "reason": reason.name(),
                        }),
                    ))?;
                    cert.revocation = Some(revocation);
                    newly.push(cert);
                }
            }
            Ok(newly)
        })?;
        if !revoked.is_empty() {
            self.metrics
                .revoked
                .fetch_add(revoked.len() as u64, Ordering::Relaxed);
            for cert in &revoked {
                self.ocsp.invalidate(&cert.serial);
            }
            self.publish_crl()?;
            if let Ok(epoch) = read_tx(self.store.as_ref(), |tx| tx.status_epoch()) {
                self.seen_epoch.store(epoch, Ordering::SeqCst);
            }
        }
        Ok(revoked)
    }

    /// Issues a new delegated OCSP signer or server TLS certificate with a new key, records it
    /// (with an audit entry) and replaces the files; a running server uses it after a restart.
    /// New keys are protected like the CA's (`iterations` is the PBKDF2 cost when encrypted).
    pub fn rotate_service_cert(
        &self,
        kind: ServiceKind<'_>,
        iterations: u32,
        actor: &str,
    ) -> Result<CertRecord, SetupError> {
        let protection = match (&self.passphrase, self.config.ca.insecure_unencrypted_keys) {
            (_, true) => KeyProtection::InsecureUnencrypted,
            (Some(passphrase), false) => KeyProtection::Encrypted {
                passphrase: passphrase.clone(),
                iterations,
            },
            (None, false) => {
                return Err(SetupError::Key(KeyError::PassphraseNeeded {
                    path: self.layout.key("ocsp"),
                }))
            }
        };
        let services = ServiceContext {
            layout: &self.layout,
            issuer_key: &self.issuer_key,
            intermediate: &self.intermediate,
            config: &self.config,
            protection: &protection,
        };
        let cert = services.create(kind)?;
        write_tx(self.store.as_ref(), |tx| {
            tx.insert_certificate(&cert)?;
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "rotate",
                serde_json::json!({"profile": cert.profile, "serial": cert.serial.to_hex()}),
            ))?;
            Ok::<_, StoreError>(())
        })?;
        Ok(cert)
    }

    /// Seconds until the delegated OCSP signer expires.
    pub fn ocsp_signer_expires_in(&self) -> i64 {
        self.ocsp.signer_not_after() - crate::model::time::now_unix()
    }

    /// Whether the certificate with this serial is revoked (unknown serials are not).
    pub fn is_revoked(&self, serial: &Serial) -> Result<bool, StoreError> {
        Ok(self
            .certificate(serial)?
            .is_some_and(|c| c.revocation.is_some()))
    }

    /// Produces, records and publishes a new full CRL of the issuing CA.
    pub fn publish_crl(&self) -> Result<Arc<PublishedCrl>, CrlError> {
        let validity = i64::from(self.config.crl.validity_hours) * 3600;
        let stored = crate::core::crl::produce(
            self.store.as_ref(),
            ISSUER_ID,
            &self.crl_issuer,
            &self.issuer_key,
            validity,
        )
        .inspect_err(|e| {
            if let CrlError::Lint(refusal) = e {
                tracing::error!(%refusal, "CRL not published");
                self.audit_refusal(
                    "system",
                    "crl-refused",
                    serde_json::json!({"issuer": ISSUER_ID, "lint": refusal.problem}),
                );
            }
        })?;
        let published = Arc::new(PublishedCrl::from_stored(stored));
        if let Ok(mut slot) = self.crl.write() {
            *slot = Some(published.clone());
        }
        self.metrics.crls.fetch_add(1, Ordering::Relaxed);
        Ok(published)
    }

    /// The number of the CRL being served (0 before the first), without producing one.
    pub fn published_crl_number(&self) -> u64 {
        self.crl
            .read()
            .ok()
            .and_then(|slot| slot.as_ref().map(|c| c.number))
            .unwrap_or(0)
    }

    /// The CRL being served, if one was produced, without producing one.
    pub fn served_crl(&self) -> Option<Arc<PublishedCrl>> {
        self.crl.read().ok().and_then(|slot| slot.clone())
    }

    /// The current CRL, producing one if none exists or the current one is past half its
    /// validity. If a new one cannot be produced (the store is unreachable), the current one
    /// is served until its nextUpdate.
    pub fn current_crl(&self) -> Result<Arc<PublishedCrl>, CrlError> {
        let current = self.crl.read().ok().and_then(|slot| slot.clone());
        let now = crate::model::time::now_unix();
        match current {
            Some(crl) if !crl_due(&crl, now) => Ok(crl),
            Some(crl) => match self.publish_crl() {
                Err(e) if now < crl.next_update => {
                    tracing::warn!(error = %e, "cannot produce a new CRL; serving the current one");
                    Ok(crl)
                }
                fresh => fresh,
            },
            None => self.publish_crl(),
        }
    }

    /// Picks up changes made by another process sharing the store (a `herald-ca cert revoke`
    /// while the server runs) and refreshes what is due: drops stale OCSP responses, produces
    /// a new CRL after such a change and before nextUpdate. Called periodically by the server.
    pub fn refresh(&self) -> Result<(), CrlError> {
        // While changes made elsewhere cannot be seen, OCSP reads every status from the store.
        let epoch = read_tx(self.store.as_ref(), |tx| tx.status_epoch())
            .inspect_err(|_| self.ocsp.set_store_reachable(false))?;
        if epoch != self.seen_epoch.swap(epoch, Ordering::SeqCst) {
            self.ocsp.clear();
            self.ocsp.set_store_reachable(true);
            self.publish_crl()?;
            return Ok(());
        }
        self.ocsp.set_store_reachable(true);
        self.current_crl().map(|_| ())
    }

    /// Answers an OCSP request (DER). Never fails: bad input gets an OCSP error status.
    pub fn ocsp_respond(&self, request: &[u8]) -> crate::core::ocsp::OcspAnswer {
        let lookup = |serial: &Serial| self.certificate(serial);
        self.ocsp.respond(request, &lookup, &self.metrics)
    }
}

fn crl_due(crl: &PublishedCrl, now: i64) -> bool {
    now >= crl.this_update + (crl.next_update - crl.this_update) / 2
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqliteStore;

    fn test_ca() -> (tempfile::TempDir, Authority) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        init(
            &dir,
            &InitOptions {
                name: "Lint".into(),
                key_type: CaKeyType::EcdsaP256,
                protection: KeyProtection::InsecureUnencrypted,
                listen: addr,
                http_listen: Some(addr),
                public_url: "http://ca.example".into(),
                tls_names: vec!["localhost".into(), "127.0.0.1".into()],
                name_domain: crate::core::config::DEFAULT_NAME_DOMAIN.into(),
            },
            &|_, layout| Ok(Arc::new(SqliteStore::open(&layout.database())?)),
        )
        .unwrap();
        let store = SqliteStore::open(&DataLayout::new(&dir).database()).unwrap();
        let ca = Authority::open(&dir, &KeyAccess { passphrase: None }, Arc::new(store)).unwrap();
        (tmp, ca)
    }

    fn audit_actions(ca: &Authority) -> Vec<(String, String)> {
        let mut actions = Vec::new();
        read_tx(ca.store(), |tx| {
            tx.for_each_audit(&mut |e| actions.push((e.entry.action, e.entry.details)))
        })
        .unwrap();
        actions
    }

    type Tamper = fn(&mut CertificateParams);

    /// Profile faults the earlier checks cannot produce, forced into the parameters of an
    /// endpoint certificate: the lint must find each in the bytes about to be signed.
    const FAULTS: [(&str, Tamper); 8] = [
        ("validity past the issuer's", |p| {
            p.not_after = now() + time::Duration::days(365 * 30)
        }),
        ("single-label DNS name", |p| {
            p.subject_alt_names = vec![SanType::DnsName("bars-host-0001".try_into().unwrap())]
        }),
        ("upper-case DNS name", |p| {
            p.subject_alt_names = vec![SanType::DnsName(
                "BARS.endpoints.herald.internal".try_into().unwrap(),
            )]
        }),
        ("critical unknown extension", |p| {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
            ext.set_criticality(true);
            p.custom_extensions.push(ext)
        }),
        ("CA flag on an endpoint", |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
        }),
        ("serial of 21 octets", |p| {
            p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x11; 21]))
        }),
        ("server usage on a client profile", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
        }),
        ("organizational unit that is no group name", |p| {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "Pilot Group")
        }),
    ];

    #[test]
    fn misprofiled_certificate_refused_before_signing_with_audit_entry_and_nothing_stored() {
        let (_tmp, ca) = test_ca();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let profile = Profile::endpoint();
        let (nb, na) = (
            now() - time::Duration::minutes(5),
            now() + time::Duration::hours(1),
        );
        let params = |serial: &Serial| {
            ca.leaf_params(
                "bars-host-0001",
                &Group::default(),
                &profile,
                serial,
                nb,
                na,
                &key,
            )
            .unwrap()
        };
        let stored_before = ca.list(&ListFilter::default()).unwrap().len();
        let audit_before = audit_actions(&ca).len();

        // The profile as configured passes.
        let serial = crate::model::serial::random().unwrap();
        ca.sign_leaf(
            &params(&serial),
            &key,
            policy::Usage::Client,
            "endpoint",
            "test",
        )
        .unwrap();

        for (fault, tamper) in FAULTS {
            let mut bad = params(&crate::model::serial::random().unwrap());
            tamper(&mut bad);
            let err = ca
                .sign_leaf(&bad, &key, policy::Usage::Client, "endpoint", "test")
                .unwrap_err();
            assert!(matches!(err, IssueError::Lint(_)), "{fault}: {err}");
            assert!(
                err.to_string().contains("pre-signing lint refused"),
                "{err}"
            );
        }
        let audit = audit_actions(&ca);
        let refused: Vec<_> = audit[audit_before..]
            .iter()
            .filter(|(action, details)| action == "issue-refused" && details.contains("lint"))
            .collect();
        assert_eq!(refused.len(), FAULTS.len(), "{audit:?}");
        assert_eq!(
            ca.list(&ListFilter::default()).unwrap().len(),
            stored_before,
            "a refused certificate is never stored"
        );
    }

    #[test]
    fn endpoint_names_become_lowercase_dns_names_under_the_name_domain() {
        let (_tmp, ca) = test_ca();
        assert_eq!(
            ca.dns_name("BARS-host-0001", policy::Usage::Client)
                .unwrap(),
            "bars-host-0001.endpoints.herald.internal"
        );
        assert_eq!(
            ca.dns_name("Relay.Site.Example", policy::Usage::Server)
                .unwrap(),
            "relay.site.example"
        );
        assert!(matches!(
            ca.dns_name("myhost", policy::Usage::Server),
            Err(PolicyError::BadDnsName { .. })
        ));
        assert_eq!(
            ca.dns_name("localhost", policy::Usage::Server).unwrap(),
            "localhost"
        );
        assert!(ca.dns_name("localhost", policy::Usage::Client).is_ok());
        assert!(matches!(
            ca.dns_name("a.-b", policy::Usage::Client),
            Err(PolicyError::BadDnsName { .. })
        ));
    }

    #[test]
    fn crl_is_reissued_at_half_its_validity_before_next_update() {
        let crl = PublishedCrl {
            der: Vec::new(),
            number: 1,
            this_update: 1000,
            next_update: 1000 + 86_400,
            etag: String::new(),
        };
        assert!(!crl_due(&crl, 1000));
        assert!(!crl_due(&crl, 1000 + 43_199));
        assert!(crl_due(&crl, 1000 + 43_200));
        assert!(crl_due(&crl, 1000 + 86_400));
    }
}
