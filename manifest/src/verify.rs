//! Verification: the only code that produces [`Verified`] values.
//!
//! The steps follow the TUF 1.0 client workflow (section 5): a trusted root, then each newer
//! root signed by the old and by its own threshold (5.3), then timestamp (5.4), snapshot (5.5),
//! targets and delegated targets (5.6), and finally each target file, with Herald's per-file
//! release signatures. Every step takes the verified result of the step before it. No step
//! reads a clock: `now` is a parameter.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Deref;
use std::sync::OnceLock;

use crate::canonical::canonical_from_json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

use crate::envelope::{Envelope, EnvelopeError, Signature};
use crate::hash::{ContentDigests, HashAlgorithm};
use crate::keys::{KeyId, PublicKey};
use crate::listing::TargetsIndex;
use crate::metadata::{
    tuf_time, DelegatedRole, Header, MetaFile, RoleType, Root, Snapshot, TargetFile, Timestamp,
};
use crate::path::TargetPath;
use crate::release::{release_signatures, target_statement};

/// Why metadata or a target failed verification.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum VerifyError {
    /// The bytes are not a well-formed envelope.
    #[error("{role} metadata: {source}")]
    Envelope { role: String, source: EnvelopeError },
    /// The `signed` part does not have the role's fields.
    #[error("{role} metadata: invalid fields: {source}")]
    Fields {
        role: String,
        source: serde_json::Error,
    },
    /// `_type` names another role.
    #[error("{role} metadata: `_type` is {found:?}")]
    WrongType { role: String, found: String },
    /// The specification version is not 1.x.
    #[error("{role} metadata: unsupported spec_version {found:?}")]
    SpecVersion { role: String, found: String },
    /// A role's threshold is zero or the role is missing.
    #[error("{role}: no usable keys or threshold (a threshold must be at least 1)")]
    BadRole { role: String },
    /// Not enough distinct trusted keys signed.
    #[error("{role} metadata: {valid} valid signature(s) from distinct trusted keys, threshold {threshold}")]
    Threshold {
        role: String,
        valid: usize,
        threshold: u32,
    },
    /// The metadata has expired.
    #[error("{role} metadata expired at {expires}")]
    Expired { role: String, expires: String },
    /// The version differs from the one the referring metadata lists.
    #[error("{role} metadata: version {found}, expected {expected}")]
    Version {
        role: String,
        expected: u64,
        found: u64,
    },
    /// The version is lower than the trusted one.
    #[error("{role} metadata: version {found} is older than trusted version {trusted} (rollback)")]
    Rollback {
        role: String,
        trusted: u64,
        found: u64,
    },
    /// A required `meta` entry is missing.
    #[error("{role} metadata does not list {entry}")]
    MissingMeta { role: String, entry: String },
    /// Length differs from the listed one.
    #[error("{what}: length {found}, expected {expected}")]
    Length {
        what: String,
        expected: u64,
        found: u64,
    },
    /// A hash differs from the listed one.
    #[error("{what}: {algorithm} hash does not match")]
    Hash { what: String, algorithm: String },
    /// No hash algorithm Herald supports is listed.
    #[error("{what}: none of the listed hash algorithms ({listed}) is supported (sha256, sha384 or sha512 expected)")]
    NoSupportedHash { what: String, listed: String },
    /// A listed hash of a supported algorithm is not hex of the algorithm's length.
    #[error("{what}: the listed {algorithm} hash is not hex of the algorithm's length")]
    BadHashValue { what: String, algorithm: String },
    /// The caller did not compute a digest that verification needs.
    #[error("{what}: the content's {algorithm} digest was not computed")]
    DigestNotComputed { what: String, algorithm: String },
    /// Two signatures name the same key ID (TUF 1.0 section 4.2: a key ID appears at most
    /// once in `signatures`).
    #[error("{role} metadata: key ID {keyid} appears more than once in `signatures`")]
    DuplicateSignature { role: String, keyid: String },
    /// The delegated role is not delegated by the given targets role.
    #[error("role {role:?} is not delegated by this targets metadata")]
    NotDelegated { role: String },
    /// The target is not listed.
    #[error("target {0} is not listed in the verified targets metadata")]
    NotListed(String),
    /// Too few valid release signatures on a target.
    #[error("target {path}: {valid} valid release signature(s) from distinct keys, threshold {threshold}")]
    ReleaseThreshold {
        path: String,
        valid: usize,
        threshold: u32,
    },
}

/// A value that passed verification. Only this module can build one.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    /// The generic `signed` value, read from `bytes` when first asked for.
    signed: OnceLock<Value>,
    bytes: Vec<u8>,
}

impl<T> Verified<T> {
    /// The typed view.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The generic `signed` value, with every member as read (unknown ones included).
    pub fn signed_value(&self) -> &Value {
        self.signed.get_or_init(|| {
            // These bytes parsed as an envelope during verification.
            serde_json::from_slice::<Value>(&self.bytes)
                .ok()
                .and_then(|mut v| v.get_mut("signed").map(Value::take))
                .unwrap_or(Value::Null)
        })
    }

    /// The exact bytes that were verified (what a client persists).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Verified root metadata.
pub type VerifiedRoot = Verified<Root>;
/// Verified timestamp metadata.
pub type VerifiedTimestamp = Verified<Timestamp>;
/// Verified snapshot metadata.
pub type VerifiedSnapshot = Verified<Snapshot>;
/// Verified targets metadata (top-level or delegated): its header and delegations typed, its
/// targets an index into the verified bytes, each entry read when looked up
/// ([`Verified::target`]).
pub type VerifiedTargets = Verified<TargetsIndex>;

/// A target file whose length, listed hashes and (if root declares release keys) release
/// signatures were verified. Its SHA-256 is that of the verified content, listed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTarget {
    path: TargetPath,
    length: u64,
    sha256: String,
}

impl VerifiedTarget {
    /// The target path.
    pub fn path(&self) -> &TargetPath {
        &self.path
    }

    /// The verified length.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The verified SHA-256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// A parsed but not yet verified document, borrowing the received bytes.
struct Parsed<'a, T> {
    signatures: Vec<Signature>,
    /// The `signed` member exactly as received.
    raw_signed: &'a [u8],
    /// Canonical JSON of `signed`, computed only when the received form is not canonical.
    canonical: OnceLock<Result<Vec<u8>, String>>,
    value: T,
    header: Header,
}

/// The verified result: the typed view and the received bytes, copied only when the caller
/// lent them.
/// Targets metadata read without checking any signature, for tests of what reads verified
/// targets.
#[cfg(test)]
pub(crate) fn unchecked_targets(bytes: &[u8]) -> VerifiedTargets {
    let doc: Parsed<'_, TargetsIndex> =
        parse(bytes, RoleType::Targets, "targets").expect("a test's targets document parses");
    verified(doc.value, Cow::Borrowed(bytes))
}

fn verified<T>(value: T, bytes: Cow<'_, [u8]>) -> Verified<T> {
    Verified {
        value,
        signed: OnceLock::new(),
        bytes: bytes.into_owned(),
    }
}

impl<T> Parsed<'_, T> {
    fn into_verified(self, bytes: &[u8]) -> Verified<T> {
        verified(self.value, Cow::Borrowed(bytes))
    }

    /// Canonical JSON of `signed` (TUF's signing form), built from the received bytes
    /// without a JSON tree ([`canonical_from_json`]).
    fn canonical(&self) -> Result<&[u8], VerifyError> {
        let canonical = self
            .canonical
            .get_or_init(|| canonical_from_json(self.raw_signed).map_err(|e| e.to_string()));
        canonical.as_deref().map_err(|message| VerifyError::Fields {
            role: self.header.role_type.clone(),
            source: serde::de::Error::custom(message),
        })
    }

    /// Checks the threshold over the signing form, then that no key ID is listed twice in
    /// `signatures` ([`check_metadata_signatures`]). Writers of canonical JSON (herald-sign,
    /// among others) send `signed` already in canonical form, so the received bytes are tried
    /// first, without building a JSON tree; otherwise the canonical form is computed. A
    /// signature only verifies over the exact bytes its key signed, so both paths accept
    /// exactly what the trusted keys signed.
    fn check(
        &self,
        role: &str,
        keys: &BTreeMap<KeyId, PublicKey>,
        keyids: &[KeyId],
        threshold: u32,
    ) -> Result<usize, VerifyError> {
        let fast = check_metadata_signatures(
            role,
            self.raw_signed,
            &self.signatures,
            keys,
            keyids,
            threshold,
        );
        match fast {
            Err(VerifyError::Threshold { .. }) => {
                let canonical = self.canonical()?;
                if canonical == self.raw_signed {
                    return fast;
                }
                check_metadata_signatures(
                    role,
                    canonical,
                    &self.signatures,
                    keys,
                    keyids,
                    threshold,
                )
            }
            other => other,
        }
    }
}

/// An envelope with its `signed` member kept as received.
#[derive(serde::Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    signed: &'a serde_json::value::RawValue,
    signatures: Vec<Signature>,
}

/// How a role's typed view is read from its `signed` member.
trait FromSigned: Sized {
    /// Reads `signed`, a part of the received `document`.
    fn from_signed(signed: &[u8], document: &[u8]) -> Result<Self, serde_json::Error>;
}

/// Root, timestamp and snapshot are read whole.
fn read_whole<T: DeserializeOwned>(signed: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(signed)
}

impl FromSigned for Root {
    fn from_signed(signed: &[u8], _: &[u8]) -> Result<Self, serde_json::Error> {
        read_whole(signed)
    }
}

impl FromSigned for Timestamp {
    fn from_signed(signed: &[u8], _: &[u8]) -> Result<Self, serde_json::Error> {
        read_whole(signed)
    }
}

impl FromSigned for Snapshot {
    fn from_signed(signed: &[u8], _: &[u8]) -> Result<Self, serde_json::Error> {
        read_whole(signed)
    }
}

/// Targets metadata is not read into a typed map of every entry: see [`TargetsIndex`].
impl FromSigned for TargetsIndex {
    fn from_signed(signed: &[u8], document: &[u8]) -> Result<Self, serde_json::Error> {
        TargetsIndex::parse(signed, document)
    }
}

fn parse<'a, T: FromSigned>(
    bytes: &'a [u8],
    role_type: RoleType,
    role: &str,
) -> Result<Parsed<'a, T>, VerifyError> {
    let raw: RawEnvelope<'_> = match serde_json::from_slice(bytes) {
        Ok(raw) => raw,
        // Not the expected shape: the generic parser gives the precise reason.
        Err(_) => {
            Envelope::from_slice(bytes).map_err(|source| VerifyError::Envelope {
                role: role.into(),
                source,
            })?;
            return Err(VerifyError::Envelope {
                role: role.into(),
                source: EnvelopeError::Shape("not a signed envelope"),
            });
        }
    };
    let raw_signed = raw.signed.get().as_bytes();
    if !raw.signed.get().starts_with('{') {
        return Err(VerifyError::Envelope {
            role: role.into(),
            source: EnvelopeError::Shape("`signed` is not an object"),
        });
    }
    let fields = |source| VerifyError::Fields {
        role: role.into(),
        source,
    };
    let header: Header = serde_json::from_slice(raw_signed).map_err(fields)?;
    if header.role_type != role_type.as_str() {
        return Err(VerifyError::WrongType {
            role: role.into(),
            found: header.role_type,
        });
    }
    if header.spec_version.split('.').next() != Some("1") {
        return Err(VerifyError::SpecVersion {
            role: role.into(),
            found: header.spec_version,
        });
    }
    let value = T::from_signed(raw_signed, bytes).map_err(fields)?;
    Ok(Parsed {
        signatures: raw.signatures,
        raw_signed,
        canonical: OnceLock::new(),
        value,
        header,
    })
}

/// Counts distinct trusted keys with a valid signature over `msg` and checks the threshold.
///
/// A key counts once however many signatures or key IDs name it: signatures are matched by
/// declared key ID against `keyids`, and the counted set holds key material, not IDs.
fn check_threshold(
    role: &str,
    msg: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<KeyId, PublicKey>,
    keyids: &[KeyId],
    threshold: u32,
) -> Result<usize, VerifyError> {
    if threshold == 0 {
        return Err(VerifyError::BadRole { role: role.into() });
    }
    let allowed: BTreeSet<&KeyId> = keyids.iter().collect();
    let mut counted: HashSet<String> = HashSet::new();
    for sig in signatures {
        if !allowed.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.get(&sig.keyid) else {
            continue;
        };
        let Ok(key) = key.verifying_key() else {
            continue;
        };
        if counted.contains(key.identity()) {
            continue;
        }
        let Ok(raw) = hex::decode(&sig.sig) else {
            continue;
        };
        if key.verify(msg, &raw) {
            counted.insert(key.identity().to_owned());
        }
    }
    if counted.len() < threshold as usize {
        return Err(VerifyError::Threshold {
            role: role.into(),
            valid: counted.len(),
            threshold,
        });
    }
    Ok(counted.len())
}

/// The rule for the signatures of a metadata file: a threshold of distinct trusted keys
/// ([`check_threshold`]), and no key ID listed twice in `signatures` (TUF 1.0 section 4.2).
/// Repeated key IDs are looked for once the threshold is met, so a file short of its
/// threshold reports that first; either way it is rejected, and a repeated signature never
/// counts twice.
fn check_metadata_signatures(
    role: &str,
    msg: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<KeyId, PublicKey>,
    keyids: &[KeyId],
    threshold: u32,
) -> Result<usize, VerifyError> {
    let valid = check_threshold(role, msg, signatures, keys, keyids, threshold)?;
    let mut seen = BTreeSet::new();
    if let Some(repeated) = signatures.iter().find(|s| !seen.insert(&s.keyid)) {
        return Err(VerifyError::DuplicateSignature {
            role: role.into(),
            keyid: repeated.keyid.to_string(),
        });
    }
    Ok(valid)
}

fn check_role_signed<T>(
    root: &Root,
    role: RoleType,
    doc: &Parsed<'_, T>,
) -> Result<(), VerifyError> {
    let keys = root.role(role).ok_or_else(|| VerifyError::BadRole {
        role: role.as_str().into(),
    })?;
    doc.check(role.as_str(), &root.keys, &keys.keyids, keys.threshold)
        .map(drop)
}

fn check_expiry(
    role: &str,
    expires: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    if now >= expires {
        return Err(VerifyError::Expired {
            role: role.into(),
            expires: tuf_time::format(expires),
        });
    }
    Ok(())
}

/// Checks metadata `bytes` against the length and hashes `meta` lists (those listed only;
/// algorithms Herald does not know are skipped).
fn check_meta_file(what: &str, bytes: &[u8], meta: &MetaFile) -> Result<(), VerifyError> {
    if let Some(expected) = meta.length {
        if bytes.len() as u64 != expected {
            return Err(VerifyError::Length {
                what: what.into(),
                expected,
                found: bytes.len() as u64,
            });
        }
    }
    for (name, expected) in meta.hashes.iter().flatten() {
        let Some(algorithm) = HashAlgorithm::from_name(name) else {
            continue;
        };
        if !hex::encode(algorithm.digest(bytes)).eq_ignore_ascii_case(expected) {
            return Err(VerifyError::Hash {
                what: what.into(),
                algorithm: name.clone(),
            });
        }
    }
    Ok(())
}

impl Verified<Root> {
    /// Takes root metadata as the trust anchor (shipped with the client or set up by an
    /// operator): it must be signed by its own root threshold. Expiry is not checked here:
    /// a client checks the expiry of the newest root after updating (TUF 1.0 step 5.3.10),
    /// with [`Verified::check_expiry`].
    pub fn trust_anchor(bytes: &[u8]) -> Result<Self, VerifyError> {
        let doc: Parsed<Root> = parse(bytes, RoleType::Root, "root")?;
        check_role_signed(&doc.value, RoleType::Root, &doc)?;
        Ok(doc.into_verified(bytes))
    }

    /// Verifies the next root version (TUF 1.0 steps 5.3.4 to 5.3.6): signed by a threshold
    /// of this root's root keys and by a threshold of its own, version exactly one more.
    pub fn verify_next_root(&self, bytes: &[u8]) -> Result<Self, VerifyError> {
        let doc: Parsed<Root> = parse(bytes, RoleType::Root, "root")?;
        check_role_signed(&self.value, RoleType::Root, &doc)?;
        check_role_signed(&doc.value, RoleType::Root, &doc)?;
        let expected = self.value.version.saturating_add(1);
        if doc.header.version != expected {
            if doc.header.version <= self.value.version {
                return Err(VerifyError::Rollback {
                    role: "root".into(),
                    trusted: self.value.version,
                    found: doc.header.version,
                });
            }
            return Err(VerifyError::Version {
                role: "root".into(),
                expected,
                found: doc.header.version,
            });
        }
        Ok(doc.into_verified(bytes))
    }

    /// Checks only that `bytes` is `role` metadata signed by a threshold of this root's keys
    /// for that role (no version, expiry or hash rule): for repository tools that audit older
    /// versions or collect signatures from several people.
    pub fn check_role_signatures(&self, role: RoleType, bytes: &[u8]) -> Result<(), VerifyError> {
        let envelope = Envelope::from_slice(bytes).map_err(|source| VerifyError::Envelope {
            role: role.as_str().into(),
            source,
        })?;
        self.check_envelope_signatures(role, &envelope)
    }

    /// Like [`Verified::check_role_signatures`] for an envelope already in memory (a
    /// repository tool checking what it just signed).
    pub fn check_envelope_signatures(
        &self,
        role: RoleType,
        envelope: &Envelope,
    ) -> Result<(), VerifyError> {
        let name = role.as_str();
        if envelope.role_type() != Some(name) {
            return Err(VerifyError::WrongType {
                role: name.into(),
                found: envelope.role_type().unwrap_or_default().into(),
            });
        }
        let canonical = envelope.signed_bytes().map_err(|e| VerifyError::Envelope {
            role: name.into(),
            source: e.into(),
        })?;
        self.check_signatures(role, &canonical, envelope.signatures())
    }

    /// Checks that `signatures` over `signed_canonical` (the canonical bytes of a role's
    /// `signed` part) meet the threshold of `role`'s keys in this root.
    pub fn check_signatures(
        &self,
        role: RoleType,
        signed_canonical: &[u8],
        signatures: &[Signature],
    ) -> Result<(), VerifyError> {
        let name = role.as_str();
        let keys = self
            .value
            .role(role)
            .ok_or_else(|| VerifyError::BadRole { role: name.into() })?;
        check_metadata_signatures(
            name,
            signed_canonical,
            signatures,
            &self.value.keys,
            &keys.keyids,
            keys.threshold,
        )
        .map(drop)
    }

    /// Fails when this root has expired at `now`.
    pub fn check_expiry(&self, now: OffsetDateTime) -> Result<(), VerifyError> {
        check_expiry("root", self.value.expires, now)
    }

    /// Verifies timestamp metadata (TUF 1.0 step 5.4): threshold of timestamp keys, no
    /// rollback of its version or of the snapshot version it lists against `trusted`, not
    /// expired at `now`.
    ///
    /// A timestamp with the same version as `trusted` never replaces it, whatever its content
    /// (step 5.4.3; python-tuf does the same): once its signatures check, `trusted` itself is
    /// returned, provided it has not expired at `now`, and the client goes on with the
    /// snapshot that one names.
    pub fn verify_timestamp(
        &self,
        bytes: &[u8],
        trusted: Option<&VerifiedTimestamp>,
        now: OffsetDateTime,
    ) -> Result<VerifiedTimestamp, VerifyError> {
        let doc: Parsed<Timestamp> = parse(bytes, RoleType::Timestamp, "timestamp")?;
        check_role_signed(&self.value, RoleType::Timestamp, &doc)?;
        let snapshot = snapshot_meta(&doc.value)?;
        if let Some(old) = trusted {
            rollback("timestamp", old.value.version, doc.value.version)?;
            if doc.value.version == old.value.version {
                check_expiry("timestamp", old.value.expires, now)?;
                return Ok(old.clone());
            }
            if let Some(old_snapshot) = old.value.snapshot_meta() {
                rollback("snapshot", old_snapshot.version, snapshot.version)?;
            }
        }
        check_expiry("timestamp", doc.header.expires, now)?;
        Ok(doc.into_verified(bytes))
    }

    /// Verifies snapshot metadata (TUF 1.0 step 5.5): length and hashes as the timestamp
    /// lists them, threshold of snapshot keys, version equal to the timestamp's, no targets
    /// metadata removed or rolled back against `trusted`, not expired at `now`.
    pub fn verify_snapshot(
        &self,
        bytes: &[u8],
        timestamp: &VerifiedTimestamp,
        trusted: Option<&VerifiedSnapshot>,
        now: OffsetDateTime,
    ) -> Result<VerifiedSnapshot, VerifyError> {
        let meta = snapshot_meta(&timestamp.value)?;
        check_meta_file("snapshot metadata", bytes, meta)?;
        let doc: Parsed<Snapshot> = parse(bytes, RoleType::Snapshot, "snapshot")?;
        check_role_signed(&self.value, RoleType::Snapshot, &doc)?;
        expect_version("snapshot", meta.version, doc.header.version)?;
        if let Some(old) = trusted {
            rollback("snapshot", old.value.version, doc.value.version)?;
            for (name, old_meta) in &old.value.meta {
                let new_meta =
                    doc.value
                        .meta
                        .get(name)
                        .ok_or_else(|| VerifyError::MissingMeta {
                            role: "snapshot".into(),
                            entry: name.clone(),
                        })?;
                rollback(name, old_meta.version, new_meta.version)?;
            }
        }
        check_expiry("snapshot", doc.header.expires, now)?;
        Ok(doc.into_verified(bytes))
    }

    /// Verifies top-level targets metadata (TUF 1.0 step 5.6): length and hashes as the
    /// snapshot lists them, threshold of targets keys, version equal to the snapshot's, not
    /// expired at `now`.
    ///
    /// `bytes` may be lent (copied into the result) or given (kept without a copy): a client
    /// that fetched a large targets file gives it, so it is held in memory once.
    pub fn verify_targets<'b>(
        &self,
        bytes: impl Into<Cow<'b, [u8]>>,
        snapshot: &VerifiedSnapshot,
        now: OffsetDateTime,
    ) -> Result<VerifiedTargets, VerifyError> {
        let keys = self
            .value
            .role(RoleType::Targets)
            .ok_or_else(|| VerifyError::BadRole {
                role: "targets".into(),
            })?;
        verify_targets_role(
            "targets",
            bytes.into(),
            snapshot,
            &self.value.keys,
            &keys.keyids,
            keys.threshold,
            now,
        )
    }

    /// Verifies the content of a target listed in `targets` (top-level or delegated):
    /// length, every supported listed hash (at least one must be listed) and, when root
    /// declares release keys, the release signatures.
    pub fn verify_target_content(
        &self,
        targets: &VerifiedTargets,
        path: &TargetPath,
        content: &[u8],
    ) -> Result<VerifiedTarget, VerifyError> {
        let entry = listed(targets, path)?;
        let expected = entry.expected_digests(path)?;
        let digests = ContentDigests::of(content, expected.keys().copied());
        self.check_target(path, &entry, &expected, &digests)
    }

    /// Like [`Verified::verify_target_content`] for a file whose length and SHA-256 were
    /// computed while streaming it to disk. A target that also lists SHA-384 or SHA-512
    /// needs those too: use [`Verified::verify_target_digests`].
    pub fn verify_target_digest(
        &self,
        targets: &VerifiedTargets,
        path: &TargetPath,
        length: u64,
        sha256: &[u8],
    ) -> Result<VerifiedTarget, VerifyError> {
        let digests = ContentDigests::new(length).with(HashAlgorithm::Sha256, sha256);
        self.verify_target_digests(targets, path, &digests)
    }

    /// Like [`Verified::verify_target_content`] for a file whose length and digests were
    /// computed while streaming it to disk: `digests` must hold SHA-256 and every other
    /// supported algorithm the target lists ([`TargetFile::expected_digests`]), and each
    /// listed one must match.
    pub fn verify_target_digests(
        &self,
        targets: &VerifiedTargets,
        path: &TargetPath,
        digests: &ContentDigests,
    ) -> Result<VerifiedTarget, VerifyError> {
        let entry = listed(targets, path)?;
        let expected = entry.expected_digests(path)?;
        self.check_target(path, &entry, &expected, digests)
    }

    /// Length and every expected digest, then the release signatures over the statement
    /// naming the content's SHA-256.
    fn check_target(
        &self,
        path: &TargetPath,
        entry: &TargetFile,
        expected: &BTreeMap<HashAlgorithm, Vec<u8>>,
        digests: &ContentDigests,
    ) -> Result<VerifiedTarget, VerifyError> {
        let what = || format!("target {path}");
        if digests.length() != entry.length {
            return Err(VerifyError::Length {
                what: what(),
                expected: entry.length,
                found: digests.length(),
            });
        }
        let computed = |algorithm: HashAlgorithm| {
            digests
                .get(algorithm)
                .ok_or_else(|| VerifyError::DigestNotComputed {
                    what: what(),
                    algorithm: algorithm.name().into(),
                })
        };
        for (&algorithm, listed) in expected {
            if computed(algorithm)? != listed.as_slice() {
                return Err(VerifyError::Hash {
                    what: what(),
                    algorithm: algorithm.name().into(),
                });
            }
        }
        let sha256 = hex::encode(computed(HashAlgorithm::Sha256)?);
        if let Some(release) = &self.value.release {
            let statement = target_statement(path, entry.length, &sha256);
            let sigs = release_signatures(entry.custom.as_ref());
            let keyids: Vec<KeyId> = release.keys.keys().cloned().collect();
            check_threshold(
                "release",
                &statement,
                &sigs,
                &release.keys,
                &keyids,
                release.threshold,
            )
            .map_err(|e| match e {
                VerifyError::Threshold {
                    valid, threshold, ..
                } => VerifyError::ReleaseThreshold {
                    path: path.to_string(),
                    valid,
                    threshold,
                },
                other => other,
            })?;
        }
        Ok(VerifiedTarget {
            path: path.clone(),
            length: entry.length,
            sha256,
        })
    }
}

fn listed(targets: &VerifiedTargets, path: &TargetPath) -> Result<TargetFile, VerifyError> {
    targets
        .target(path)
        .ok_or_else(|| VerifyError::NotListed(path.to_string()))
}

fn snapshot_meta(timestamp: &Timestamp) -> Result<&MetaFile, VerifyError> {
    timestamp
        .snapshot_meta()
        .ok_or_else(|| VerifyError::MissingMeta {
            role: "timestamp".into(),
            entry: "snapshot.json".into(),
        })
}

fn rollback(role: &str, trusted: u64, found: u64) -> Result<(), VerifyError> {
    if found < trusted {
        return Err(VerifyError::Rollback {
            role: role.into(),
            trusted,
            found,
        });
    }
    Ok(())
}

fn expect_version(role: &str, expected: u64, found: u64) -> Result<(), VerifyError> {
    if expected != found {
        return Err(VerifyError::Version {
            role: role.into(),
            expected,
            found,
        });
    }
    Ok(())
}

fn verify_targets_role(
    name: &str,
    bytes: Cow<'_, [u8]>,
    snapshot: &VerifiedSnapshot,
    keys: &BTreeMap<KeyId, PublicKey>,
    keyids: &[KeyId],
    threshold: u32,
    now: OffsetDateTime,
) -> Result<VerifiedTargets, VerifyError> {
    let file = format!("{name}.json");
    let meta = snapshot
        .value
        .meta
        .get(&file)
        .ok_or_else(|| VerifyError::MissingMeta {
            role: "snapshot".into(),
            entry: file.clone(),
        })?;
    check_meta_file(&format!("{name} metadata"), &bytes, meta)?;
    let doc: Parsed<TargetsIndex> = parse(&bytes, RoleType::Targets, name)?;
    doc.check(name, keys, keyids, threshold)?;
    expect_version(name, meta.version, doc.header.version)?;
    check_expiry(name, doc.header.expires, now)?;
    let value = doc.value;
    Ok(verified(value, bytes))
}

impl Verified<TargetsIndex> {
    /// The entry for `path` in this role's own `targets`, read from the verified bytes.
    pub fn target(&self, path: &TargetPath) -> Option<TargetFile> {
        self.value.entry(&self.bytes, path)
    }

    /// The paths this role lists in its own `targets`, in order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &TargetPath> + '_ {
        self.value.paths()
    }

    /// Every entry of this role's own `targets`, in path order, each read from the verified
    /// bytes as the iteration reaches it.
    pub fn targets(&self) -> impl Iterator<Item = (&TargetPath, TargetFile)> + '_ {
        self.value.entries(&self.bytes)
    }

    /// The entries of this role's own `targets` whose path is `start` or sorts after it, in
    /// path order, each read as the iteration reaches it: finding the first costs a binary
    /// search, not a walk over the paths before it.
    pub fn targets_from<'a>(
        &'a self,
        start: &TargetPath,
    ) -> impl Iterator<Item = (&'a TargetPath, TargetFile)> + 'a {
        self.value.entries_from(&self.bytes, Some(start))
    }

    /// The delegated roles trusted for `path`, in priority order. A client visits them in
    /// order (depth first) and stops after the first `terminating` one it visits.
    pub fn delegations_for<'a>(
        &'a self,
        path: &'a TargetPath,
    ) -> impl Iterator<Item = &'a DelegatedRole> + 'a {
        self.value
            .delegations
            .iter()
            .flat_map(|d| d.roles.iter())
            .filter(move |r| r.matches(path))
    }

    /// Verifies the metadata of `role`, delegated by this targets role: length and hashes as
    /// the snapshot lists them, threshold of the delegated keys, version equal to the
    /// snapshot's, not expired at `now`.
    ///
    /// `bytes` may be lent (copied into the result) or given (kept without a copy).
    pub fn verify_delegated<'b>(
        &self,
        role: &str,
        bytes: impl Into<Cow<'b, [u8]>>,
        snapshot: &VerifiedSnapshot,
        now: OffsetDateTime,
    ) -> Result<VerifiedTargets, VerifyError> {
        let delegations = self
            .value
            .delegations
            .as_ref()
            .ok_or_else(|| VerifyError::NotDelegated { role: role.into() })?;
        let delegated = delegations
            .roles
            .iter()
            .find(|r| r.name == role)
            .ok_or_else(|| VerifyError::NotDelegated { role: role.into() })?;
        verify_targets_role(
            role,
            bytes.into(),
            snapshot,
            &delegations.keys,
            &delegated.keyids,
            delegated.threshold,
            now,
        )
    }
}

impl TargetFile {
    /// The digests listed for the algorithms Herald supports, decoded, in algorithm order
    /// (SHA-256 first). Algorithms Herald does not know are skipped; when none is left the
    /// target cannot be verified ([`VerifyError::NoSupportedHash`]). A supported hash that is
    /// not hex of the algorithm's length is an error ([`VerifyError::BadHashValue`]).
    pub fn expected_digests(
        &self,
        path: &TargetPath,
    ) -> Result<BTreeMap<HashAlgorithm, Vec<u8>>, VerifyError> {
        let what = || format!("target {path}");
        let mut expected = BTreeMap::new();
        for (name, value) in &self.hashes {
            let Some(algorithm) = HashAlgorithm::from_name(name) else {
                continue;
            };
            let digest = hex::decode(value)
                .ok()
                .filter(|d| d.len() == algorithm.output_len())
                .ok_or_else(|| VerifyError::BadHashValue {
                    what: what(),
                    algorithm: name.clone(),
                })?;
            expected.insert(algorithm, digest);
        }
        if expected.is_empty() {
            return Err(VerifyError::NoSupportedHash {
                what: what(),
                listed: self.hashes.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod expected_digests_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(hashes: &[(&str, String)]) -> TargetFile {
        TargetFile {
            length: 1,
            hashes: hashes
                .iter()
                .map(|(a, h)| ((*a).to_owned(), h.clone()))
                .collect(),
            custom: None,
        }
    }

    fn path() -> TargetPath {
        TargetPath::new("f").unwrap()
    }

    #[test]
    fn unsupported_only_hashes_are_refused_naming_them() {
        let err = entry(&[("md5", "00".into()), ("blake2b", "11".into())])
            .expected_digests(&path())
            .unwrap_err();
        assert!(matches!(err, VerifyError::NoSupportedHash { .. }), "{err}");
        assert!(err.to_string().contains("blake2b, md5"), "{err}");
    }

    #[test]
    fn malformed_supported_hash_is_refused() {
        let err = entry(&[("sha512", "abcd".into())])
            .expected_digests(&path())
            .unwrap_err();
        assert!(matches!(err, VerifyError::BadHashValue { .. }), "{err}");
    }

    #[test]
    fn unknown_algorithms_are_skipped_beside_supported_ones() {
        let sha384 = hex::encode(HashAlgorithm::Sha384.digest(b"x"));
        let expected = entry(&[("md5", "00".into()), ("sha384", sha384)])
            .expected_digests(&path())
            .unwrap();
        assert_eq!(
            expected.keys().copied().collect::<Vec<_>>(),
            [HashAlgorithm::Sha384]
        );
    }
}
