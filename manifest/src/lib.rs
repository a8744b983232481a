//! Herald's signed-manifest format.
//!
//! The repository format is The Update Framework (TUF) specification 1.0.x, plus one Herald
//! extension: every target carries its own release-key signature (see [`target_statement`]).
//! This crate holds the metadata types, canonical JSON, signature envelopes and verification
//! against trusted keys and a `now` passed in by the caller.
//!
//! Verification is a chain of steps, each taking the verified result of the step before:
//!
//! 1. [`VerifiedRoot::trust_anchor`] then [`VerifiedRoot::verify_next_root`] for each newer
//!    root, then [`VerifiedRoot::check_expiry`];
//! 2. [`VerifiedRoot::verify_timestamp`];
//! 3. [`VerifiedRoot::verify_snapshot`];
//! 4. [`VerifiedRoot::verify_targets`], then [`VerifiedTargets::verify_delegated`] for
//!    delegated roles ([`VerifiedTargets::delegations_for`] lists those trusted for a path);
//! 5. [`VerifiedRoot::verify_target_content`] or [`VerifiedRoot::verify_target_digests`]
//!    for each file: every listed SHA-256, SHA-384 or SHA-512 hash must match
//!    ([`TargetFile::expected_digests`]).
//!
//! # Per-file release signatures (Herald extension)
//!
//! Root's `signed` part may declare release keys, which rotate with the root:
//!
//! ```json
//! "x-herald-release": {"keys": {"KEYID": {"keytype": "ed25519", ...}}, "threshold": 1}
//! ```
//!
//! Each target's `custom` member then carries
//! `"x-herald-signatures": [{"keyid": "KEYID", "sig": "HEX"}]`: signatures over the target
//! statement, the canonical JSON of
//!
//! ```json
//! {"domain":"herald-target-v1","length":LENGTH,"path":"PATH","sha256":"LOWERCASE-HEX"}
//! ```
//!
//! ([`target_statement`]). A target verifies when it is listed in verified targets metadata,
//! its length and hashes match, and a threshold of distinct release keys signed its statement.
//! A root without `x-herald-release` is a plain TUF repository.
//!
//! # Rollout policy (Herald extension)
//!
//! The top-level targets metadata may carry `x-herald-rollout`, the signed policy saying
//! which endpoints get which release of which channel, and when: see [`rollout`].
//!
//! Architecture invariant: this crate performs no I/O and reads no clock.

#![forbid(unsafe_code)]

mod canonical;
mod envelope;
mod hash;
mod keys;
mod listing;
mod metadata;
mod path;
mod release;
pub mod rollout;
mod verify;

pub use canonical::{to_canonical_bytes, write_canonical, CanonicalError};
pub use envelope::{envelope_canonical_bytes, sign_canonical, Envelope, EnvelopeError, Signature};
pub use hash::{ContentDigests, HashAlgorithm};
pub use keys::{Ed25519Signer, KeyError, KeyId, KeyVal, PublicKey, Signer, VerifyingKey};
pub use listing::TargetsIndex;
pub use metadata::{
    tuf_time, DelegatedRole, Delegations, MetaFile, ReleaseKeys, RoleKeys, RoleType, Root,
    Snapshot, TargetFile, Targets, Timestamp, RELEASE_KEYS_FIELD, SPEC_VERSION,
};
pub use path::{PathError, TargetPath};
pub use release::{
    release_signatures, sign_target, target_statement, with_release_signatures,
    RELEASE_SIGNATURES_FIELD, TARGET_STATEMENT_DOMAIN,
};
pub use verify::{
    Verified, VerifiedRoot, VerifiedSnapshot, VerifiedTarget, VerifiedTargets, VerifiedTimestamp,
    VerifyError,
};

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
