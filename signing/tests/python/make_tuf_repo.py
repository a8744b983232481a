"""Builds a TUF repository with python-tuf's Metadata API, for Herald's interoperability tests.

Usage: make_tuf_repo.py OUT_DIR NOW_UNIX_SECONDS

Keys: root Ed25519, targets ECDSA P-256, snapshot RSASSA-PSS (SHA-256), timestamp Ed25519, and
a delegated role "tools" with an Ed25519 key (paths "tools/*"). Writes, with consistent
snapshots:

  OUT/metadata/1.root.json, 2.root.json (rotated root key), root.json
  OUT/metadata/1.targets.json, 1.tools.json, 1.snapshot.json, timestamp.json (version 2)
  OUT/targets/<sha256>.file.txt, OUT/targets/tools/<sha256>.tool.bin
  OUT/variants/timestamp-v1.json       older timestamp (for rollback tests)
  OUT/variants/timestamp-expired.json  version 3, expired at NOW
"""

import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def main() -> None:
    out, now = sys.argv[1], datetime.fromtimestamp(int(sys.argv[2]), tz=timezone.utc)
    expires = (now + timedelta(days=30)).replace(microsecond=0)
    meta_dir = os.path.join(out, "metadata")
    variants = os.path.join(out, "variants")
    for d in (meta_dir, variants, os.path.join(out, "targets", "tools")):
        os.makedirs(d, exist_ok=True)
    pretty = JSONSerializer(compact=False)

    root_key = CryptoSigner.generate_ed25519()
    root_key2 = CryptoSigner.generate_ed25519()
    targets_key = CryptoSigner.generate_ecdsa()
    snapshot_key = CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256")
    timestamp_key = CryptoSigner.generate_ed25519()
    tools_key = CryptoSigner.generate_ed25519()

    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role, signer in (("root", root_key), ("targets", targets_key),
                         ("snapshot", snapshot_key), ("timestamp", timestamp_key)):
        root.signed.add_key(signer.public_key, role)
    # An unknown member that must survive verification untouched.
    root.signed.unrecognized_fields["x-vendor-note"] = {"kept": [1, "two", None]}
    root.sign(root_key)
    root.to_file(os.path.join(meta_dir, "1.root.json"), pretty)

    # Root rotation: version 2 signed by the old and the new root key.
    root.signed.version = 2
    root.signed.revoke_key(root_key.public_key.keyid, "root")
    root.signed.add_key(root_key2.public_key, "root")
    root.signatures.clear()
    root.sign(root_key, append=True)
    root.sign(root_key2, append=True)
    root.to_file(os.path.join(meta_dir, "2.root.json"), pretty)
    root.to_file(os.path.join(meta_dir, "root.json"), pretty)

    def write_target(path: str, data: bytes) -> TargetFile:
        info = TargetFile.from_data(path, data, ["sha256"])
        dirname, _, name = path.rpartition("/")
        stored = os.path.join(out, "targets", dirname, f"{info.hashes['sha256']}.{name}")
        with open(stored, "wb") as f:
            f.write(data)
        return info

    tools = Metadata(Targets(expires=expires))
    info = write_target("tools/tool.bin", b"\x00tool binary\xff")
    tools.signed.targets[info.path] = info
    tools.sign(tools_key)
    tools.to_file(os.path.join(meta_dir, "1.tools.json"), pretty)

    targets = Metadata(Targets(expires=expires))
    info = write_target("file.txt", b"hello from python-tuf\n")
    targets.signed.targets[info.path] = info
    targets.signed.delegations = Delegations(
        keys={tools_key.public_key.keyid: tools_key.public_key},
        roles={"tools": DelegatedRole("tools", [tools_key.public_key.keyid], 1, True,
                                      paths=["tools/*"])},
    )
    targets.sign(targets_key)
    targets.to_file(os.path.join(meta_dir, "1.targets.json"), pretty)

    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta["targets.json"] = MetaFile(1)
    snapshot.signed.meta["tools.json"] = MetaFile(1)
    snapshot.sign(snapshot_key)
    snapshot.to_file(os.path.join(meta_dir, "1.snapshot.json"), pretty)
    with open(os.path.join(meta_dir, "1.snapshot.json"), "rb") as f:
        snapshot_bytes = f.read()

    def timestamp(version: int, expiry: datetime) -> Metadata:
        ts = Metadata(Timestamp(version=version, expires=expiry,
                                snapshot_meta=MetaFile(1, length=len(snapshot_bytes),
                                                       hashes={"sha256": __import__("hashlib").sha256(snapshot_bytes).hexdigest()})))
        ts.sign(timestamp_key)
        return ts

    timestamp(1, expires).to_file(os.path.join(variants, "timestamp-v1.json"), pretty)
    timestamp(2, expires).to_file(os.path.join(meta_dir, "timestamp.json"), pretty)
    timestamp(3, now).to_file(os.path.join(variants, "timestamp-expired.json"), pretty)


if __name__ == "__main__":
    main()
