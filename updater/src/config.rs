//! The `herald-update` configuration file (TOML) and its environment overrides.
//!
//! ```toml
//! # Folder the updater manages: files of the installed release live here.
//! install_root = "/opt/acme"
//! # Folder for the updater's own state: trusted metadata, status, queued reports, identity.
//! state_dir = "/var/lib/herald-update"
//! # Repository mirrors, tried in order; each has metadata/ and targets/ below it.
//! mirrors = ["https://updates.example.com/acme/", "https://mirror.example.net/acme/"]
//! # The repository's first trusted root metadata (copied into state_dir on first use).
//! trusted_root = "/etc/herald/root.json"
//! # TLS trust anchors (PEM). Absent: the enrolled identity's root (state_dir/identity/ca.pem)
//! # when `herald-update enroll` has run, else the system's roots.
//! ca_bundle = "/etc/herald/ca.pem"
//! # Client certificate and key for mutual TLS. Absent: the enrolled identity
//! # (state_dir/identity/identity.pem) when there is one.
//! client_cert = "/etc/herald/client.pem"
//! client_key = "/etc/herald/client.key"
//! # Proxy for every request; absent: HTTPS_PROXY / NO_PROXY from the environment.
//! proxy = "http://proxy.example.com:3128"
//! no_proxy = "localhost,.internal"
//! # Polling: every interval_secs, plus up to jitter_secs at random (each at most a week).
//! interval_secs = 300
//! jitter_secs = 60
//! # Refuse repositories whose root declares no release (per-file) keys.
//! require_release_signatures = true
//! # Move files the release does not list into INSTALL_ROOT/.herald/quarantine/.
//! quarantine_unlisted = false
//! # Where status reports are sent (queued on disk until acknowledged).
//! status_url = "https://ca.example.com/api/v1/status"
//! # trace, debug, info, warn or error.
//! log_level = "info"
//! # Parallel target downloads (1 to 64).
//! parallel_downloads = 4
//! # Unpack `X.zip` targets into the folder `X/` (entries checked before anything is written).
//! unpack_zip = false
//! # The release channel to follow (`stable`, `beta`, ...) when the repository carries a
//! # signed rollout policy. Absent: the channel the policy gives this endpoint's group (from
//! # its certificate), else `stable`.
//! channel = "beta"
//! # Keep this machine at the release it has, whatever the repository publishes, until set
//! # back to false.
//! hold = false
//! # Also run the commands a release's signed metadata names (after the ones below).
//! allow_release_hooks = false
//!
//! # Commands run around each install: a list of program and arguments each (no shell),
//! # with a clean environment, the install root as working folder, a time limit and their
//! # output captured (at most 4 KiB) into the status report. A failing pre_install cancels
//! # the install; a failing post_install or health_check rolls it back, and that release is
//! # not tried again until a newer one is published.
//! [hooks]
//! pre_install = ["/usr/local/bin/acme-stop"]
//! post_install = ["/usr/local/bin/acme-start"]
//! health_check = ["/usr/local/bin/acme-health", "--quick"]
//! timeout_secs = 60
//! ```
//!
//! [`Config::load`] checks every value before anything uses it ([`Config::validate`]).
//!
//! Environment overrides: `HERALD_UPDATE_INSTALL_ROOT`, `HERALD_UPDATE_STATE_DIR`,
//! `HERALD_UPDATE_MIRRORS` (comma-separated), `HERALD_UPDATE_LOG_LEVEL`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A mirror is not an absolute URL.
    #[error("mirror {value:?}: {source}")]
    Mirror {
        value: String,
        #[source]
        source: url::ParseError,
    },
    /// A mirror uses plain HTTP without `allow_plain_http`.
    #[error("mirror {0}: plain HTTP is refused (set allow_plain_http = true to allow it)")]
    PlainHttp(String),
    /// A setting holds a value that cannot work.
    #[error("{setting} {value:?}: {reason}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A number is outside its allowed range.
    #[error("{setting} = {value}: allowed range is 1 to {max} (0 to {max} for waits)")]
    OutOfRange {
        setting: &'static str,
        value: u64,
        max: u64,
    },
    /// The `[hooks]` table names an empty program or a time limit out of range.
    #[error("[hooks]: {0}")]
    Hooks(String),
    /// A required setting is missing.
    #[error("missing setting `{0}` (in the configuration file or its environment variable)")]
    Missing(&'static str),
    /// No configuration file was given.
    #[error("no configuration: pass --config FILE or set HERALD_UPDATE_CONFIG")]
    NoFile,
}

/// The configuration, as read.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder the updater manages.
    pub install_root: Option<PathBuf>,
    /// Folder for the updater's state.
    pub state_dir: Option<PathBuf>,
    /// Repository mirrors, in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// The repository's first trusted root metadata.
    pub trusted_root: Option<PathBuf>,
    /// TLS trust anchors (PEM).
    pub ca_bundle: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// Proxy URL.
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy.
    pub no_proxy: Option<String>,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Random extra seconds added to each wait.
    #[serde(default = "default_jitter")]
    pub jitter_secs: u64,
    /// Require per-file release signatures.
    #[serde(default)]
    pub require_release_signatures: bool,
    /// Quarantine unlisted files.
    #[serde(default)]
    pub quarantine_unlisted: bool,
    /// Status report endpoint.
    pub status_url: Option<String>,
    /// Log level.
    pub log_level: Option<String>,
    /// Parallel target downloads.
    #[serde(default = "default_parallel")]
    pub parallel_downloads: usize,
    /// Unpack targets whose path ends in `.zip` into a folder of the same name without
    /// `.zip`, instead of installing the zip file.
    #[serde(default)]
    pub unpack_zip: bool,
    /// Allow `http://` mirrors (TUF metadata still protects integrity, but not privacy).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The release channel to follow (overrides the signed policy's channel for the group).
    pub channel: Option<String>,
    /// Keep the installed release, whatever the repository offers.
    #[serde(default)]
    pub hold: bool,
    /// Run the hooks a release's signed metadata names, after the configured ones.
    #[serde(default)]
    pub allow_release_hooks: bool,
    /// Commands run before and after each install, and the health check.
    pub hooks: Option<herald_manifest::rollout::Hooks>,
}

/// Longest poll interval or jitter accepted: one week.
pub const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;

/// Most parallel target downloads accepted.
pub const MAX_PARALLEL: u64 = 64;

fn default_interval() -> u64 {
    300
}

fn default_jitter() -> u64 {
    60
}

fn default_parallel() -> usize {
    4
}

impl Config {
    /// Reads `path`, then applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let path = path.ok_or(ConfigError::NoFile)?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        config.apply_env(|name| std::env::var(name).ok());
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting that can be checked without the disk or the network, so that a
    /// bad value is refused at load with a message naming it, not met later by the agent:
    /// mirrors (absolute base URLs, `https`, `file`, or `http` with `allow_plain_http`), the
    /// status URL, the proxy URL and the log level. Settings left out are not required here:
    /// each command asks for the ones it needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.mirrors.is_empty() {
            self.mirror_urls()?;
        }
        self.status_url()?;
        if let Some(proxy) = &self.proxy {
            let url = Url::parse(proxy).map_err(|_| invalid("proxy", proxy, "not a URL"))?;
            if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h")
                || url.host().is_none()
            {
                return Err(invalid(
                    "proxy",
                    proxy,
                    "expected http://, https:// or socks5:// with a host",
                ));
            }
        }
        for (setting, value, max) in [
            ("interval_secs", self.interval_secs, MAX_WAIT_SECS),
            ("jitter_secs", self.jitter_secs, MAX_WAIT_SECS),
            (
                "parallel_downloads",
                self.parallel_downloads as u64,
                MAX_PARALLEL,
            ),
        ] {
            if value > max || (setting == "parallel_downloads" && value == 0) {
                return Err(ConfigError::OutOfRange {
                    setting,
                    value,
                    max,
                });
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), None) => {
                return Err(invalid(
                    "client_cert",
                    &cert.display().to_string(),
                    "client_key is missing (set both or neither)",
                ))
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "client_key",
                    &key.display().to_string(),
                    "client_cert is missing (set both or neither)",
                ))
            }
            _ => {}
        }
        if let Some(channel) = &self.channel {
            if !herald_manifest::rollout::is_valid_channel(channel) {
                return Err(invalid(
                    "channel",
                    channel,
                    herald_manifest::rollout::CHANNEL_NAME_RULE,
                ));
            }
        }
        if let Some(hooks) = &self.hooks {
            if let Err(problem) = hooks.check() {
                return Err(ConfigError::Hooks(problem));
            }
        }
        if let Some(level) = &self.log_level {
            if tracing_subscriber::EnvFilter::try_new(level).is_err() {
                return Err(invalid(
                    "log_level",
                    level,
                    "expected trace, debug, info, warn or error",
                ));
            }
        }
        Ok(())
    }

    /// The status report URL, if one is configured: `https://` (or `http://` with
    /// `allow_plain_http`) with a host.
    pub fn status_url(&self) -> Result<Option<Url>, ConfigError> {
        let Some(text) = &self.status_url else {
            return Ok(None);
        };
        let url = Url::parse(text).map_err(|_| invalid("status_url", text, "not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_plain_http => {}
            "http" => {
                return Err(invalid(
                    "status_url",
                    text,
                    "plain HTTP is refused (set allow_plain_http = true to allow it)",
                ))
            }
            _ => return Err(invalid("status_url", text, "expected an https:// URL")),
        }
        if url.host().is_none() {
            return Err(invalid("status_url", text, "no host"));
        }
        Ok(Some(url))
    }

    /// Applies the `HERALD_UPDATE_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var("HERALD_UPDATE_INSTALL_ROOT") {
            self.install_root = Some(v.into());
        }
        if let Some(v) = var("HERALD_UPDATE_STATE_DIR") {
            self.state_dir = Some(v.into());
        }
        if let Some(v) = var("HERALD_UPDATE_MIRRORS") {
            self.mirrors = v.split(',').map(|m| m.trim().to_owned()).collect();
        }
        if let Some(v) = var("HERALD_UPDATE_LOG_LEVEL") {
            self.log_level = Some(v);
        }
    }

    /// The install root.
    pub fn install_root(&self) -> Result<&Path, ConfigError> {
        self.install_root
            .as_deref()
            .ok_or(ConfigError::Missing("install_root"))
    }

    /// The state folder.
    pub fn state_dir(&self) -> Result<&Path, ConfigError> {
        self.state_dir
            .as_deref()
            .ok_or(ConfigError::Missing("state_dir"))
    }

    /// The mirrors as base URLs (each ending with `/`), checked.
    pub fn mirror_urls(&self) -> Result<Vec<Url>, ConfigError> {
        if self.mirrors.is_empty() {
            return Err(ConfigError::Missing("mirrors"));
        }
        self.mirrors
            .iter()
            .map(|m| {
                let text = if m.ends_with('/') {
                    m.clone()
                } else {
                    format!("{m}/")
                };
                let url = Url::parse(&text).map_err(|source| ConfigError::Mirror {
                    value: m.clone(),
                    source,
                })?;
                check_mirror(&url, m, self.allow_plain_http)?;
                Ok(url)
            })
            .collect()
    }
}

/// Checks that a mirror URL can serve a repository: a base URL (`metadata/` and `targets/`
/// are joined to it) with a supported scheme and, for HTTP, a host.
pub fn check_mirror(url: &Url, value: &str, allow_plain_http: bool) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" | "file" => {}
        "http" if allow_plain_http => {}
        "http" => return Err(ConfigError::PlainHttp(value.to_owned())),
        _ => {
            return Err(invalid(
                "mirror",
                value,
                "unsupported scheme (expected https://, file://, or http:// with allow_plain_http)",
            ))
        }
    }
    if url.cannot_be_a_base() {
        return Err(invalid("mirror", value, "not a base URL"));
    }
    if url.scheme() != "file" && url.host().is_none() {
        return Err(invalid("mirror", value, "no host"));
    }
    Ok(())
}

fn invalid(setting: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn unknown_setting_is_an_error_naming_it() {
        let err = toml::from_str::<Config>("instal_root = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("instal_root"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let mut config: Config =
            toml::from_str("install_root = \"/a\"\nmirrors = [\"https://m/\"]").unwrap();
        config.apply_env(|name| match name {
            "HERALD_UPDATE_INSTALL_ROOT" => Some("/b".into()),
            "HERALD_UPDATE_MIRRORS" => Some("https://x/r, https://y/r/".into()),
            _ => None,
        });
        assert_eq!(config.install_root().unwrap(), Path::new("/b"));
        let urls: Vec<String> = config
            .mirror_urls()
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, ["https://x/r/", "https://y/r/"]);
    }

    #[test]
    fn plain_http_mirror_refused_unless_allowed() {
        let mut config: Config = toml::from_str("mirrors = [\"http://m/repo\"]").unwrap();
        assert!(matches!(
            config.mirror_urls(),
            Err(ConfigError::PlainHttp(_))
        ));
        config.allow_plain_http = true;
        assert_eq!(config.mirror_urls().unwrap()[0].as_str(), "http://m/repo/");
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald-update.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn mirror_that_cannot_be_a_base_is_refused_at_load() {
        let err = load_text("mirrors = [\"mailto:x\"]").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    setting: "mirror",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("mailto:x"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_at_load_with_their_name() {
        for (text, setting) in [
            ("mirrors = [\"ftp://m/repo\"]", "mirror"),
            ("mirrors = [\"unix:/run/repo.sock\"]", "mirror"),
            ("mirrors = [\"data:text/plain,x\"]", "mirror"),
            ("status_url = \"http://ca/api/v1/status\"", "status_url"),
            ("status_url = \"mailto:ops\"", "status_url"),
            ("proxy = \"not a url\"", "proxy"),
            ("log_level = \"loud=[\"", "log_level"),
            ("client_cert = \"/etc/herald/client.pem\"", "client_cert"),
            ("interval_secs = 9223372036854775807", "interval_secs"),
            ("jitter_secs = 604801", "jitter_secs"),
            ("parallel_downloads = 0", "parallel_downloads"),
            ("parallel_downloads = 100000", "parallel_downloads"),
            ("channel = \"Beta Channel\"", "channel"),
        ] {
            let err = load_text(text).unwrap_err();
            let named = match &err {
                ConfigError::Invalid { setting, .. } | ConfigError::OutOfRange { setting, .. } => {
                    *setting
                }
                ConfigError::Mirror { .. } | ConfigError::PlainHttp(_) => "mirror",
                _ => "",
            };
            assert_eq!(named, setting, "{text}: {err}");
        }
        assert!(load_text("mirrors = [\"https://m/repo\"]\nlog_level = \"debug\"").is_ok());
    }

    #[test]
    fn hooks_table_is_checked_at_load() {
        let config = load_text(
            "channel = \"beta\"\nhold = true\n[hooks]\nhealth_check = [\"/bin/true\"]\n\
             timeout_secs = 5\n",
        )
        .unwrap();
        assert_eq!(config.channel.as_deref(), Some("beta"));
        assert!(config.hold);
        let hooks = config.hooks.unwrap();
        assert_eq!(hooks.health_check, ["/bin/true"]);
        assert_eq!(hooks.timeout_secs, Some(5));
        for text in [
            "[hooks]\nhealth_check = [\"\"]",
            "[hooks]\nhealth_check = [\"/bin/true\"]\ntimeout_secs = 0",
            "[hooks]\nhealth_check = [\"/bin/true\"]\ntimeout_secs = 3601",
        ] {
            assert!(
                matches!(load_text(text), Err(ConfigError::Hooks(_))),
                "{text}"
            );
        }
        let err = load_text("[hooks]\nhealthcheck = [\"/bin/true\"]").unwrap_err();
        assert!(err.to_string().contains("healthcheck"), "{err}");
    }

    #[test]
    fn the_group_is_never_taken_from_the_configuration() {
        // The group comes from the certificate alone: a configuration naming one is refused.
        let err = load_text("group = \"pilot\"").unwrap_err();
        assert!(err.to_string().contains("group"), "{err}");
    }

    #[test]
    fn defaults_are_documented_values() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config.interval_secs, 300);
        assert_eq!(config.jitter_secs, 60);
        assert_eq!(config.parallel_downloads, 4);
        assert!(!config.require_release_signatures);
        assert!(!config.hold && !config.allow_release_hooks);
        assert!(config.channel.is_none() && config.hooks.is_none());
        assert!(matches!(
            config.install_root(),
            Err(ConfigError::Missing(_))
        ));
    }
}
