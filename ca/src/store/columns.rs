//! The column lists and row conversions both store backends share, so that their queries read
//! and write the same columns in the same order.

use crate::store::{FleetReport, StoreError};

/// The columns of a certificate row, in the order both stores read them.
pub(crate) const CERT_COLUMNS: &str =
    "serial, issuer, name, profile, not_before, not_after, issued_at, der, revoked_at, reason";

/// The columns of an admin token row, in [`AdminTokenRecord`] order.
pub(crate) const ADMIN_TOKEN_COLUMNS: &str =
    "id, hash, role, label, created_at, expires_at, revoked_at, last_used_at";

/// The columns of `fleet_reports`, in the order both stores read and write them.
pub(crate) const FLEET_COLUMNS: &str =
    "name, serial, received_at, installed_version, last_check, last_result, last_error, unlisted";

/// A `fleet_reports` row as read, before its version and file list are checked.
#[derive(Debug)]
pub(crate) struct RawFleetReport {
    pub(crate) name: String,
    pub(crate) serial: String,
    pub(crate) received_at: i64,
    pub(crate) installed_version: Option<i64>,
    pub(crate) last_check: Option<String>,
    pub(crate) last_result: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) unlisted: String,
}

impl RawFleetReport {
    pub(crate) fn finish(self) -> Result<FleetReport, StoreError> {
        let installed_version = self
            .installed_version
            .map(|v| {
                u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("release number {v}")))
            })
            .transpose()?;
        let unlisted = serde_json::from_str(&self.unlisted)
            .map_err(|e| StoreError::Corrupt(format!("unlisted files of {}: {e}", self.name)))?;
        Ok(FleetReport {
            name: self.name,
            serial: self.serial,
            received_at: self.received_at,
            installed_version,
            last_check: self.last_check,
            last_result: self.last_result,
            last_error: self.last_error,
            unlisted,
        })
    }
}

/// A release number as the database stores it (a signed 64-bit integer).
pub(crate) fn version_to_db(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::OutOfRange(format!("release number {version}")))
}

/// The unlisted-file list as stored (a JSON array).
pub(crate) fn unlisted_to_db(unlisted: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(unlisted).map_err(|e| StoreError::Backend(format!("unlisted files: {e}")))
}

/// The columns of an enrollment token row, in the order both stores read them.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, hash, name, base, profile, created_at, expires_at, created_by,
    used_at, serial, spki_sha256, revoked_at";
