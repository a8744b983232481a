//! Opening the store a configuration selects: the one place that names both backends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::sqlite::SqliteStore;
use crate::store::{PgOptions, PgStore};
use crate::store::{Store, StoreError};

/// `[store]` of config.toml: where certificates, revocations, tokens and the audit log live.
/// Without `url` the SQLite file `herald.db` in the data folder is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// A `postgres://user@host:port/database` URL selects the PostgreSQL store, shared by
    /// several `herald-ca` servers (see docs/ha.md).
    pub url: Option<String>,
    /// PostgreSQL schema holding Herald's tables (created if missing); default `herald`.
    pub schema: Option<String>,
    /// Most PostgreSQL connections this server opens; default 16.
    pub pool_size: Option<usize>,
    /// Seconds to wait for a PostgreSQL connection before a request fails with 503; default 5.
    pub connect_timeout_secs: Option<u64>,
}

impl StoreSection {
    pub(crate) fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Opens the store `section` selects: PostgreSQL for a `postgres://` (or `postgresql://`)
/// URL, else the SQLite file `sqlite_path`.
pub(crate) fn open(
    section: &StoreSection,
    sqlite_path: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    match &section.url {
        None => Ok(Arc::new(SqliteStore::open(sqlite_path)?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let options = PgOptions {
                url: url.clone(),
                schema: section
                    .schema
                    .clone()
                    .unwrap_or_else(|| "herald".to_owned()),
                pool_size: section.pool_size.unwrap_or(16),
                connect_timeout: Duration::from_secs(section.connect_timeout_secs.unwrap_or(5)),
            };
            Ok(Arc::new(PgStore::open(&options)?))
        }
        Some(_) => Err(StoreError::Backend(
            "unsupported store URL: use a postgres:// URL, or none for the SQLite file".into(),
        )),
    }
}
