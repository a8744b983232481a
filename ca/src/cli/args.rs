//! Command-line interface of `herald-ca`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::core::keys::CaKeyType;

/// Run Herald's certification manager: issue one-time enrollment tokens, turn certificate
/// requests into client certificates, revoke them, and publish revocation through OCSP and
/// CRLs.
///
/// Exit codes: 0 success, 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "herald-ca", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Log level: trace, debug, info, warn or error (overrides `RUST_LOG`).
    #[arg(long, global = true, env = "HERALD_LOG", default_value = "info")]
    pub log_level: String,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the CA keeps its keys, store and configuration.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    /// The CA's data folder (keys, SQLite store, configuration).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,
}

/// How to unlock the CA keys.
///
/// The passphrase is taken from `--passphrase-file`, else from the environment variable
/// `HERALD_CA_PASSPHRASE`, else from the `passphrase` file that `quickstart` writes in the data
/// folder.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// File holding the passphrase of the CA keys (first line).
    #[arg(long, env = "HERALD_CA_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Listener addresses of the servers.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// HTTPS address (admin API, OCSP, CRL, health, metrics); overrides config.toml.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP address for OCSP, CRL, CA certificates, health and metrics; overrides
    /// config.toml.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
}

/// A `herald-ca` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a root CA, an online intermediate, a delegated OCSP signer, the server's TLS
    /// certificate, the store and a configuration file.
    ///
    /// Keys are written encrypted with the passphrase from --passphrase-file or
    /// HERALD_CA_PASSPHRASE (PKCS#8, PBES2 with PBKDF2-SHA256 and AES-256-CBC, readable by
    /// OpenSSL). After init, export the root key (`herald-ca root export`) and remove it from
    /// the server (`herald-ca root remove`): the server never needs it.
    Init(InitArgs),
    /// Run the HTTPS server (admin, enrollment and status API, the web console at /ui/,
    /// OCSP, CRL, health, metrics, and the update repository of `[repository]` at /repo/) and
    /// the plain-HTTP OCSP/CRL listener. Console accounts: `herald-ca admin user add`.
    ///
    /// The store is the SQLite file herald.db in the data folder, unless config.toml's
    /// `[store] url` (or HERALD_CA_STORE_URL) is a postgres:// URL: then several servers,
    /// each with a copy of the data folder, can share that database behind a load balancer
    /// (schema from `[store] schema` or HERALD_CA_STORE_SCHEMA, default `herald`; migrated
    /// at start). See docs/ha.md.
    Serve {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Key unlocking.
        #[command(flatten)]
        keys: KeyArgs,
        /// Listener overrides.
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Initialise if needed, then serve, and print what to do next. Needs no set-up.
    ///
    /// On first run it creates the data folder with a random passphrase in `passphrase` (mode
    /// 0600) that encrypts the keys, an admin token in `admin-token` (0600) and the console
    /// account `admin`, whose one-time password it prints once (open https://LISTEN/ui/, then
    /// choose a password and enrol TOTP), and configures
    /// the folder `herald-repository` beside it (`NAME-repository` beside a data folder `NAME`;
    /// never inside the folder that holds the keys) to be served at /repo/ to enrolled
    /// endpoints. Every start
    /// prints the root fingerprint and a fresh enrollment token. That is fine for trying
    /// Herald; for production run `init` with your own passphrase, then `serve`.
    Quickstart {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// HTTPS address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Plain-HTTP address for OCSP, CRL and health.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: SocketAddr,
        /// Base name of the enrollment token printed at start (the endpoint becomes BASE-NNNN).
        #[arg(long, default_value = "demo")]
        token_name: String,
    },
    /// Manage one-time enrollment tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Issue, list, show and revoke certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Produce a new certificate revocation list and write it (DER, or PEM with --pem).
    Crl {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Key unlocking.
        #[command(flatten)]
        keys: KeyArgs,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
    /// Export or remove the root CA key (offline root).
    #[command(subcommand)]
    Root(RootCommand),
    /// Replace the delegated OCSP signer or the server's TLS certificate with a new key and
    /// certificate from the issuing CA (before they expire; restart the server afterwards).
    Rotate(RotateArgs),
    /// Create, list and revoke admin API tokens (stored only as SHA-256 hashes).
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    /// Manage the accounts that sign in to the web console (https://LISTEN/ui/).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run a relay for a site: endpoints talk to it as to the server; it forwards enrollment,
    /// renewal and status reports upstream unchanged (endpoints sign their own) over its own
    /// mutual-TLS identity and caches CRLs, OCSP responses and repository files. It holds no
    /// CA key. On first start it enrolls itself with a relay token (`token create --profile
    /// relay`).
    Relay(RelayArgs),
    /// Verify, checkpoint, show and export the hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show the endpoints of the fleet, their groups and state, and rollout progress per
    /// release; move an endpoint to another group.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

/// Arguments of `herald-ca relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// The upstream server or relay (HTTPS base URL, e.g. https://ca.example.net:8443; only
    /// https:// is accepted).
    #[arg(long)]
    pub upstream: String,
    /// SHA-256 fingerprint of the Herald root certificate (hex, colons allowed); the
    /// upstream's root must match it.
    #[arg(long)]
    pub root_fingerprint: String,
    /// A relay enrollment token, needed on first start only.
    #[arg(long, env = "HERALD_RELAY_TOKEN")]
    pub token: Option<String>,
    /// Where the relay keeps its identity (identity.pem, mode 0600, and ca.pem).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// HTTPS address endpoints connect to.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// The relay's TLS server certificate chain (PEM), issued by the CA for the name
    /// endpoints use (e.g. `herald-ca cert issue --profile server --name relay.site.example`).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// The HTTPS base URL endpoints reach the relay at (its discovery document points
    /// there). Default: the first DNS name of --tls-cert with the port of --listen. Never
    /// taken from a request's Host header.
    #[arg(long, env = "HERALD_RELAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The private key of the TLS server certificate (PEM, PKCS#8).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// How long repository files stay cached, in seconds.
    #[arg(long, default_value_t = 60)]
    pub repository_ttl_secs: u64,
    /// Most bytes of upstream answers (repository files, CRLs, OCSP) the relay keeps in
    /// memory; larger files are streamed through without being kept.
    #[arg(long, env = "HERALD_RELAY_CACHE_MAX_BYTES", default_value_t = herald_token_service::relay::DEFAULT_CACHE_MAX_BYTES)]
    pub cache_max_bytes: usize,
    /// Seconds between fetches of the upstream's CRL, against which clients asking for
    /// repository files are checked (refused once the CRL is past its nextUpdate).
    #[arg(long, env = "HERALD_RELAY_CRL_REFRESH_SECS", default_value_t = 60)]
    pub crl_refresh_secs: u64,

    /// Connection limits of the relay's listener.
    #[command(flatten)]
    pub limits: ConnectionLimitArgs,
}

/// Connection limits of a listener (the `[server]` keys of the same names for `serve`).
#[derive(Debug, Clone, Args)]
pub struct ConnectionLimitArgs {
    /// Most simultaneous connections; more wait in the kernel's backlog.
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most simultaneous connections per client address (IPv6: per /64); more are closed at
    /// once, so one client cannot take the listener from the others.
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's headers; also the idle keep-alive limit.
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds a client has to complete its TLS handshake.
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_HANDSHAKE_TIMEOUT_SECS)]
    pub handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers arrived, and again to
    /// take the response (plus one second per --min-response-rate bytes of response sent);
    /// the relay's own handling time is not counted.
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,
    /// Bytes per second of response that extend --request-timeout-secs (large downloads).
    #[arg(long, default_value_t = crate::core::limits::DEFAULT_MIN_RESPONSE_RATE)]
    pub min_response_rate: u64,
}

impl ConnectionLimitArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> crate::core::limits::Limits {
        crate::core::limits::Limits {
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            handshake_timeout: std::time::Duration::from_secs(self.handshake_timeout_secs),
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            min_response_rate: self.min_response_rate,
            ..crate::core::limits::Limits::default()
        }
        .sane()
    }
}

/// Arguments of `herald-ca init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The data folder.
    #[command(flatten)]
    pub data: DataDir,
    /// Key unlocking.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Organisation name written into the CA certificates.
    #[arg(long, default_value = "Herald")]
    pub name: String,
    /// CA key algorithm.
    #[arg(long, value_enum, default_value_t = CaKeyType::EcdsaP256)]
    pub key_type: CaKeyType,
    /// Store the CA keys WITHOUT encryption. Every start then logs a warning.
    #[arg(long)]
    pub insecure_unencrypted_keys: bool,
    /// PBKDF2 iterations for the key files. Lower it only with a long random passphrase.
    #[arg(long, default_value_t = crate::core::keys::DEFAULT_KDF_ITERATIONS)]
    pub kdf_iterations: u32,
    /// HTTPS address written to config.toml.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address (OCSP, CRL) written to config.toml.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Base URL of the OCSP/CRL/CA-certificate endpoints written into every certificate
    /// (default: http://<http-listen>).
    #[arg(long)]
    pub public_url: Option<String>,
    /// HTTPS base URL endpoints use for enrollment, renewal and status, advertised by the
    /// discovery document (`[enrollment] api_url`; default https://<listen> when --listen is a
    /// specific address).
    #[arg(long)]
    pub api_url: Option<String>,
    /// DNS name or IP address for the server's TLS certificate (repeat; default localhost and
    /// 127.0.0.1).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// DNS domain of endpoint certificates: their subjectAltName is NAME.DOMAIN (lower-case);
    /// the common name stays NAME. Written to config.toml as `[ca] name_domain`.
    #[arg(long, default_value = crate::core::config::DEFAULT_NAME_DOMAIN)]
    pub name_domain: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which service certificate `rotate` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateWhat {
    /// The delegated OCSP signing certificate (`ocsp.crt`, `ocsp.key`).
    OcspSigner,
    /// The HTTPS server certificate (`tls.crt`, `tls.key`).
    Tls,
}

/// Arguments of `herald-ca rotate`.
#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// What to replace.
    #[arg(value_enum)]
    pub what: RotateWhat,
    /// The data folder.
    #[command(flatten)]
    pub data: DataDir,
    /// Key unlocking (the new key is encrypted with the same passphrase).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// PBKDF2 iterations for the new key file. Lower it only with a long random passphrase.
    #[arg(long, default_value_t = crate::core::keys::DEFAULT_KDF_ITERATIONS)]
    pub kdf_iterations: u32,
    /// DNS name or IP address for a new TLS certificate (repeat; default localhost, 127.0.0.1
    /// and the HTTPS listener's address).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
}

/// `herald-ca root` commands.
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Copy the (encrypted) root key to a file, to keep it offline.
    Export {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Destination file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Delete the root key from the data folder (export it first).
    Remove {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Confirm the removal.
        #[arg(long)]
        yes: bool,
    },
}

/// `herald-ca admin-token` commands.
#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create an admin API token and print it once (only its hash is stored).
    Create {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Role: admin (everything), operator (revocation, endpoint tokens, reads) or auditor
        /// (read-only, audit log). Which token profiles a role may create is
        /// `[token_policy]` in config.toml.
        #[arg(long, value_parser = ["admin", "operator", "auditor"])]
        role: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, a number with s, m, h or d (e.g. 90d); default: no expiry.
        #[arg(long)]
        expires: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List admin tokens: id, role, label, state (active, expired, revoked), expiry and
    /// last use.
    List {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin token at once (it is refused from the next call on).
    Revoke {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The token's identifier (from `admin-token create` or `admin-token list`).
        id: String,
    },
}

/// `herald-ca admin` commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Console accounts: sign-in with a password (Argon2id hash stored) and a TOTP second
    /// factor (RFC 6238, enrolled at the first sign-in; ten one-time recovery codes), with a
    /// role: admin (everything, including accounts), operator (revocation, endpoint tokens,
    /// reads) or auditor (read-only). Repeated failed sign-ins lock an account for a while
    /// (`[console]` in config.toml). Every sign-in, failure and action is audited with the
    /// account's name.
    #[command(subcommand)]
    User(UserCommand),
}

/// `herald-ca admin user` commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account and print its one-time password (shown once): at its first
    /// sign-in the holder chooses a password and enrols TOTP.
    Add {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The account name (1 to 64 letters, digits, '.', '_', '-', '@').
        name: String,
        /// Role: admin, operator or auditor.
        #[arg(long, value_parser = ["admin", "operator", "auditor"])]
        role: String,
        /// Do not require a second factor for this account (not recommended; for a
        /// read-only service account, say).
        #[arg(long)]
        no_mfa: bool,
        /// Print JSON (the account and `one_time_password`).
        #[arg(long)]
        json: bool,
    },
    /// List accounts: name, role, status (active, first-sign-in, locked, disabled), second
    /// factor (totp, pending, off) and last sign-in.
    List {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: it can no longer sign in and its sessions end at once.
    Disable {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The account name.
        name: String,
    },
    /// Remove an account's second factor (TOTP and recovery codes) and unlock it; it enrols
    /// again at its next sign-in. Its sessions end.
    ResetMfa {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The account name.
        name: String,
    },
    /// Give an account a new one-time password (printed once) and unlock it; it chooses its
    /// own at the next sign-in. Its sessions end.
    Passwd {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The account name.
        name: String,
    },
}

/// `herald-ca token` commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a one-time enrollment token. The service allocates a unique name `BASE-NNNN`
    /// (never one used before, even if its certificate was revoked), stores only the token's
    /// hash and prints the token once: hand it to the endpoint (`herald-update enroll`).
    Create {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The base name (letters, digits, '-'); the endpoint's name becomes BASE-NNNN.
        #[arg(long)]
        name: String,
        /// How long the token stays valid: a number with s, m, h or d (1 minute to 90 days).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// The issuance profile of the endpoint's certificate.
        #[arg(long, default_value = "endpoint")]
        profile: String,
        /// The group the endpoint joins (1 to 32 of a-z, 0-9 and '-'). Its certificate
        /// carries the group (as its organizationalUnitName), which the signed rollout policy
        /// reads on the endpoint; `fleet set-group` changes it later. Server profiles take no
        /// group.
        #[arg(long, default_value = herald_wire::Group::DEFAULT)]
        group: String,
        /// Print JSON (id, token, name, expires_at, profile, group).
        #[arg(long)]
        json: bool,
    },
    /// List enrollment tokens with their group and state: pending, used, expired or revoked.
    List {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a pending token so it can no longer enroll anything.
    Revoke {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The token's identifier (from `token create` or `token list`).
        id: String,
    },
}

/// `herald-ca cert` commands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// List issued certificates, newest first.
    List {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Only certificates with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only revoked certificates.
        #[arg(long)]
        revoked: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate.
    Show {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Serial number (hex).
        serial: String,
        /// Print the certificate as PEM.
        #[arg(long)]
        pem: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a certificate from a PKCS#10 request (admin use; endpoints enroll with a token).
    /// A certificate of a client profile carries the group the CA records for the name
    /// (`default` unless set by a token or `fleet set-group`).
    Issue {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Key unlocking.
        #[command(flatten)]
        keys: KeyArgs,
        /// The request, PEM or DER.
        #[arg(long)]
        csr: PathBuf,
        /// The subject name (common name and DNS subject alternative name).
        #[arg(long)]
        name: String,
        /// The issuance profile.
        #[arg(long, default_value = crate::core::policy::DEFAULT_PROFILE)]
        profile: String,
        /// Write the certificate (PEM) here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate by serial, or every certificate of a name, with an RFC 5280
    /// reason. Revocation is permanent; a new CRL is produced at once.
    Revoke {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Key unlocking (to sign the new CRL).
        #[command(flatten)]
        keys: KeyArgs,
        /// Serial number (hex) or name.
        what: String,
        /// The RFC 5280 reason: unspecified, key-compromise, ca-compromise,
        /// affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn,
        /// aa-compromise, or RFC 5280's own names (keyCompromise, cACompromise, ...).
        /// certificateHold and removeFromCRL are refused (revocation is permanent; no delta
        /// CRLs).
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `herald-ca audit` commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the audit log's hash chains (one per server sharing PostgreSQL, else one): a
    /// removed or altered entry is reported (exit 1). With --checkpoint, also hold the log
    /// against a checkpoint kept elsewhere, so that a cut tail or a rewritten and recomputed
    /// chain is reported too.
    Verify {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// A checkpoint written by `audit checkpoint` (kept outside the CA). Its signature
        /// must be by this CA's audit key (`audit.pub` in the data folder).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a checkpoint of the log's head (of every chain's head) with the CA's audit key
    /// and write it (JSON). Keep
    /// checkpoints somewhere the CA's operators cannot rewrite (another host, a ticket, WORM
    /// storage); `audit verify --checkpoint` detects truncation and rewriting against them.
    /// The API serves the same at `GET /api/v1/audit/checkpoint` (auditor role).
    Checkpoint {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Key unlocking (the audit key is encrypted like the CA keys).
        #[command(flatten)]
        keys: KeyArgs,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show audit entries, one per line (control characters escaped). Entries of chains
    /// other than 0 (servers sharing PostgreSQL each append to a chain of their own) are
    /// numbered CHAIN.SEQ.
    Show {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// First sequence number shown (in every chain).
        #[arg(long, default_value_t = 1)]
        from: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Export audit entries as JSON lines (chain, seq, time, actor, action, details,
    /// prev_hash, hash), chain by chain, for archiving or a log pipeline. The API serves the same at
    /// `GET /api/v1/audit?from=SEQ&limit=N` (auditor role).
    Export {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// First sequence number exported (in every chain).
        #[arg(long, default_value_t = 1)]
        from: i64,
        /// At most this many entries (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// `herald-ca fleet` commands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// List endpoints (every holder of an endpoint certificate and every endpoint that sent a
    /// status report) with certificate state, group, installed release, rollout state, last
    /// seen and last error.
    List {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Only the endpoints of this group (as the CA records it).
        #[arg(long)]
        group: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one endpoint, including the files in its install root that its release does not
    /// list.
    Show {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The endpoint's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move an endpoint to another group (audited). The CA records the group at once; the
    /// endpoint's certificate carries it from its next renewal on (`herald-update run` renews
    /// when a third of the lifetime is left), and only then does the endpoint follow the
    /// rollout policy of its new group. `fleet list` shows both groups until then.
    SetGroup {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// The endpoint's name.
        name: String,
        /// The new group (1 to 32 of a-z, 0-9 and '-').
        group: String,
        /// Print JSON (name, group, previous, certificate_group).
        #[arg(long)]
        json: bool,
    },
    /// Show rollout progress: per channel, release and group, how many endpoints' latest
    /// reports are installed, pending, failed, rolled back or held. Each endpoint counts once,
    /// under the group of the certificate its report was sent with. The API serves the same
    /// at `GET /api/v1/fleet/releases` (auditor role).
    Releases {
        /// The data folder.
        #[command(flatten)]
        data: DataDir,
        /// Print JSON: {"releases":[{"channel","release","group","installed","pending",
        /// "failed","rolled_back","held"}]}.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The command's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Serve { .. } => "serve",
            Command::Quickstart { .. } => "quickstart",
            Command::Token(_) => "token",
            Command::Cert(_) => "cert",
            Command::Crl { .. } => "crl",
            Command::Root(_) => "root",
            Command::AdminToken(_) => "admin-token",
            Command::Admin(_) => "admin",
            Command::Rotate(_) => "rotate",
            Command::Relay(_) => "relay",
            Command::Audit(_) => "audit",
            Command::Fleet(_) => "fleet",
        }
    }
}

/// `--key-type` values: the core's key types, named as in `config.toml`.
impl clap::ValueEnum for CaKeyType {
    fn value_variants<'a>() -> &'a [Self] {
        &[CaKeyType::EcdsaP256, CaKeyType::Ed25519]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            CaKeyType::EcdsaP256 => (
                "ecdsa-p256",
                "ECDSA on NIST P-256 with SHA-256 (the default, accepted everywhere)",
            ),
            CaKeyType::Ed25519 => ("ed25519", "Ed25519 (RFC 8410)"),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}
