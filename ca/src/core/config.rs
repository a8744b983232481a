//! The CA's configuration file (`config.toml` in the data folder) and the data folder layout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::keys::CaKeyType;
use crate::core::policy::Profile;
use crate::store::open::StoreSection;

/// The data folder and the files in it.
#[derive(Debug, Clone)]
pub struct DataLayout {
    dir: PathBuf,
}

impl DataLayout {
    /// The layout of `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// The SQLite store.
    pub fn database(&self) -> PathBuf {
        self.dir.join("herald.db")
    }
    /// A certificate file (`root.crt`, `intermediate.crt`, `ocsp.crt`, `tls.crt`), PEM.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    /// A key file (`root.key`, ...), PEM PKCS#8, encrypted unless insecure mode.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
    /// The update repository folder `quickstart` serves: beside the data folder, never in
    /// it, so that nothing in the repository (a stray link included) can reach the keys,
    /// the passphrase or the admin token. `herald-data` gets `herald-repository`, any other
    /// `NAME` gets `NAME-repository`. `None` when the data folder has no parent (`/`).
    /// Call it on an absolute data folder path (`.` has no name to derive from).
    pub fn quickstart_repository(&self) -> Option<PathBuf> {
        let name = self.dir.file_name()?.to_str()?;
        let base = name.strip_suffix("-data").unwrap_or(name);
        self.dir
            .parent()
            .map(|p| p.join(format!("{base}-repository")))
    }
    /// The passphrase file written by `quickstart`.
    pub fn quickstart_passphrase(&self) -> PathBuf {
        self.dir.join("passphrase")
    }
    /// The admin token file written by `quickstart`.
    pub fn quickstart_admin_token(&self) -> PathBuf {
        self.dir.join("admin-token")
    }
}

/// Errors reading or writing the configuration.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source} (run `herald-ca init` first?)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this version.
    #[error("invalid configuration {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The authority.
    pub ca: CaSection,
    /// The servers.
    pub server: ServerSection,
    /// CRL publication.
    #[serde(default)]
    pub crl: CrlSection,
    /// OCSP responses.
    #[serde(default)]
    pub ocsp: OcspSection,
    /// The certificate store (SQLite in the data folder unless a PostgreSQL URL is given).
    #[serde(default, skip_serializing_if = "StoreSection::is_default")]
    pub store: StoreSection,
    /// Enrollment: what the discovery document advertises.
    #[serde(default)]
    pub enrollment: EnrollmentSection,
    /// An update repository served over HTTPS under `/repo/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositorySection>,
    /// Which admin roles may create enrollment tokens of which profiles.
    #[serde(default, skip_serializing_if = "TokenPolicy::is_default")]
    pub token_policy: TokenPolicy,
    /// Per-address limits on enrollment and renewal, and aggregation of anonymous refusals.
    #[serde(default)]
    pub enrollment_limits: herald_token_service::EnrollmentLimits,
    /// Where `/metrics` is served and who may read it.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The web console at `/ui/`: sessions and sign-in lockout.
    #[serde(default, skip_serializing_if = "ConsoleSection::is_default")]
    pub console: ConsoleSection,
    /// Issuance profiles by name; `endpoint` is the default.
    pub profiles: BTreeMap<String, Profile>,
}

/// `[repository]`: a folder written by `herald-sign` (with `metadata/` and `targets/` in it),
/// served read-only over HTTPS at `/repo/`. The repository's own signatures protect its
/// content; the server only controls who may download it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// The repository folder; a relative path is taken from the data folder.
    pub dir: PathBuf,
    /// Serve only to clients with a valid, unrevoked certificate of this CA (mutual TLS;
    /// needs `client_auth` `optional` or `required`). Default true.
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
}

/// `[token_policy]`: the profiles each admin role may create enrollment tokens for through
/// the API (`"*"`: every profile). A token of a profile mints that kind of identity, so this
/// is who may create relays and TLS servers. By default only `admin` may create anything but
/// `endpoint` tokens; `auditor` creates none. Local `herald-ca token create` (access to the
/// data folder) is not limited.
///
/// ```toml
/// [token_policy]
/// operator = ["endpoint", "kiosk"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// Profiles the `admin` role may create tokens for.
    pub admin: Vec<String>,
    /// Profiles the `operator` role may create tokens for.
    pub operator: Vec<String>,
    /// Profiles the `auditor` role may create tokens for (auditors cannot call the token API).
    pub auditor: Vec<String>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            admin: vec!["*".to_owned()],
            operator: vec![crate::core::policy::DEFAULT_PROFILE.to_owned()],
            auditor: Vec::new(),
        }
    }
}

impl TokenPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a caller of `role` (`admin`, `operator`, `auditor`) may create a token of
    /// `profile`.
    pub fn allows(&self, role: &str, profile: &str) -> bool {
        let allowed = match role {
            "admin" => &self.admin,
            "operator" => &self.operator,
            "auditor" => &self.auditor,
            _ => return false,
        };
        allowed.iter().any(|p| p == "*" || p == profile)
    }
}

/// `[metrics]`: the Prometheus endpoint `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` on this plain-HTTP address only (for example a management network
    /// or `127.0.0.1:9100`), and no longer on the HTTPS and plain-HTTP listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <admin token>` (any role; an `auditor` token is enough)
    /// to read `/metrics`.
    #[serde(default)]
    pub require_token: bool,
}

fn default_true() -> bool {
    true
}

/// `[console]`: the web console at `/ui/` on the HTTPS listener.
///
/// ```toml
/// [console]
/// enabled = true
/// idle_timeout_minutes = 30     # a session unused this long ends
/// absolute_timeout_hours = 12   # every session ends this long after sign-in
/// lockout_failures = 5          # failed sign-ins (password or code) before a lockout
/// lockout_minutes = 15
/// address_failures_burst = 10   # failed sign-ins one client address may make in a burst
/// address_failures_per_minute = 2
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// Serve the console (default true).
    pub enabled: bool,
    /// Minutes without a request after which a session ends (1 to 1440).
    pub idle_timeout_minutes: u32,
    /// Hours after sign-in after which a session ends whatever its use (1 to 168).
    pub absolute_timeout_hours: u32,
    /// Consecutive failed sign-ins of an account (wrong password or code) that lock it.
    pub lockout_failures: u32,
    /// Minutes a locked account stays locked.
    pub lockout_minutes: u32,
    /// Failed sign-ins (any account) one client address may make in a burst before it is
    /// answered 429 (IPv6: per /64).
    pub address_failures_burst: u32,
    /// Failed sign-ins per minute an address regains.
    pub address_failures_per_minute: u32,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
            lockout_failures: 5,
            lockout_minutes: 15,
            address_failures_burst: 10,
            address_failures_per_minute: 2,
        }
    }
}

impl ConsoleSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[enrollment]`: what endpoints learn from `/.well-known/herald`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentSection {
    /// The HTTPS base URL endpoints use for enrollment, renewal and status (for example
    /// `https://ca.example.net:8443`). Without it, the discovery document uses the HTTPS
    /// listener's address when that is a specific one, else leaves the URLs out (endpoints
    /// then use the server URL they were given); never the client's `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Update repository mirrors (absolute URLs), listed in the discovery document.
    #[serde(default)]
    pub repository_urls: Vec<String>,
}

/// `[ca]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSection {
    /// Organisation name used in CA subjects.
    pub name: String,
    /// Key algorithm of the CA keys.
    pub key_type: CaKeyType,
    /// Keys stored without encryption (warned about at every start).
    #[serde(default)]
    pub insecure_unencrypted_keys: bool,
    /// The DNS domain under which endpoint (client-usage) certificates name their holder:
    /// the subjectAltName dNSName is `NAME.NAME_DOMAIN`, lower-cased, while the common name
    /// keeps the allocated short name. Default `endpoints.herald.internal` (`.internal` is
    /// reserved for private use and never resolves on the public Internet).
    #[serde(default = "default_name_domain")]
    pub name_domain: String,
}

/// The default [`CaSection::name_domain`].
pub(crate) const DEFAULT_NAME_DOMAIN: &str = "endpoints.herald.internal";

fn default_name_domain() -> String {
    DEFAULT_NAME_DOMAIN.to_owned()
}

/// Checks a `name_domain`: a lower-case DNS name of at least two labels, short enough to
/// leave room for a 63-character name in front of it.
pub(crate) fn check_name_domain(domain: &str) -> Result<(), String> {
    crate::core::lint::check_dns_name(domain, false)?;
    // NAME (at most 63 characters) + "." + domain must fit in 253.
    if domain.len() > 253 - 64 {
        return Err(format!(
            "name_domain {domain:?} is longer than {} characters",
            253 - 64
        ));
    }
    Ok(())
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// HTTPS listener (admin API, everything).
    pub listen: SocketAddr,
    /// Plain-HTTP listener for OCSP, CRL, CA certificates, health and metrics (as OCSP and CRL
    /// are usually served); absent to disable.
    pub http_listen: Option<SocketAddr>,
    /// Base URL written into certificates for OCSP, CRL and CA issuers (normally the plain-HTTP
    /// listener's public address), without trailing slash.
    pub public_url: String,
    /// Mutual TLS on the HTTPS listener.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Most simultaneous connections per listener; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most simultaneous connections per client address (IPv6: per /64) and listener; more
    /// are closed at once, so one client cannot take the listener from the others.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers; also the idle keep-alive limit.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to complete its TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers arrived, and again to
    /// take the response (plus one second per `min_response_rate` bytes of response sent);
    /// the server's own handling time is not counted.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Bytes per second of response that extend `request_timeout_secs` (large downloads).
    #[serde(default = "default_min_response_rate")]
    pub min_response_rate: u64,
}

impl ServerSection {
    /// The connection limits of both listeners.
    pub fn limits(&self) -> crate::core::limits::Limits {
        crate::core::limits::Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            min_response_rate: self.min_response_rate,
            ..crate::core::limits::Limits::default()
        }
        .sane()
    }
}

/// Whether the HTTPS server asks for client certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// Not asked.
    None,
    /// Asked; verified (chain and revocation) when presented; connections without one are
    /// allowed (admin calls use bearer tokens).
    #[default]
    Optional,
    /// Required: connections without a valid, unrevoked client certificate are refused.
    Required,
}

pub(crate) fn default_max_connections() -> usize {
    crate::core::limits::DEFAULT_MAX_CONNECTIONS
}

pub(crate) fn default_max_connections_per_client() -> usize {
    crate::core::limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT
}

pub(crate) fn default_header_timeout() -> u64 {
    crate::core::limits::DEFAULT_HEADER_TIMEOUT_SECS
}

pub(crate) fn default_handshake_timeout() -> u64 {
    crate::core::limits::DEFAULT_HANDSHAKE_TIMEOUT_SECS
}

pub(crate) fn default_request_timeout() -> u64 {
    crate::core::limits::DEFAULT_REQUEST_TIMEOUT_SECS
}

pub(crate) fn default_min_response_rate() -> u64 {
    crate::core::limits::DEFAULT_MIN_RESPONSE_RATE
}

/// `[crl]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSection {
    /// Hours between thisUpdate and nextUpdate; a new CRL is produced at half this period.
    pub validity_hours: u32,
}

impl Default for CrlSection {
    fn default() -> Self {
        Self { validity_hours: 24 }
    }
}

/// `[ocsp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcspSection {
    /// Minutes between thisUpdate and nextUpdate of a response; cached responses are re-signed
    /// at half this period.
    pub validity_minutes: u32,
}

impl Default for OcspSection {
    fn default() -> Self {
        Self {
            validity_minutes: 240,
        }
    }
}

impl Config {
    /// Reads `config.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        check_name_domain(&config.ca.name_domain).map_err(|detail| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: format!("[ca] name_domain: {detail}"),
        })?;
        Ok(config)
    }

    /// Writes `config.toml` atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let text = format!(
            "# herald-ca configuration. Environment and command-line flags override the server\n\
             # addresses; see `herald-ca serve --help`.\n\n{text}"
        );
        herald_files::write_public(path, text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The OCSP responder URL written into certificates.
    pub fn ocsp_url(&self) -> String {
        format!("{}/ocsp", self.server.public_url)
    }

    /// The CRL URL of an issuer written into certificates.
    pub fn crl_url(&self, issuer: &str) -> String {
        format!("{}/crl/{issuer}.crl", self.server.public_url)
    }

    /// The URL of an issuer's certificate (DER) for the AIA caIssuers entry.
    pub fn ca_issuers_url(&self, issuer: &str) -> String {
        format!("{}/ca/{issuer}.crt", self.server.public_url)
    }

    /// The HTTPS base URL endpoints use for enrollment, renewal, status and the repository:
    /// the configured `[enrollment] api_url`, else the HTTPS listener's own address when it is
    /// a specific one. Never the client's `Host` header: whoever sends the request chooses
    /// that, so a discovery document built from it could send endpoints anywhere (or poison a
    /// cache in front of the server). Without a configured address the URLs are left out, and
    /// endpoints use the server URL they were given.
    pub fn api_base(&self) -> Option<String> {
        if let Some(url) = &self.enrollment.api_url {
            return Some(url.trim_end_matches('/').to_owned());
        }
        let listen = self.server.listen;
        (!listen.ip().is_unspecified()).then(|| format!("https://{listen}"))
    }
}

/// The URL path the update repository is served under (`[repository]`).
pub(crate) const REPO_PATH: &str = "/repo";
