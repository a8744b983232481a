"""python-tuf side of Herald's release benchmark (run by the bench-release example).

Usage: bench_python_tuf.py RELEASE_DIR REPO_DIR NOW_UNIX_SECONDS

Builds and signs the same repository as `herald-sign init` + `herald-sign release` with
python-tuf's Metadata API: every file hashed and stored as targets/DIR/SHA256.NAME, a per-file
Ed25519 release signature over Herald's target statement in each target's `custom`, then
targets, snapshot and timestamp metadata (and root), written as compact JSON.
"""

import hashlib
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer


def main() -> None:
    release, repo, now = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = datetime.fromtimestamp(now, tz=timezone.utc)
    meta_dir = os.path.join(repo, "metadata")
    targets_dir = os.path.join(repo, "targets")
    os.makedirs(meta_dir, exist_ok=True)
    compact = JSONSerializer(compact=True)
    keys = {role: CryptoSigner.generate_ed25519()
            for role in ("root", "targets", "snapshot", "timestamp", "release")}

    root = Metadata(Root(expires=now + timedelta(days=365), consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(keys[role].public_key, role)
    release_key = keys["release"]
    root.signed.unrecognized_fields["x-herald-release"] = {
        "keys": {release_key.public_key.keyid: release_key.public_key.to_dict()},
        "threshold": 1,
    }
    root.sign(keys["root"])
    root.to_file(os.path.join(meta_dir, "1.root.json"), compact)

    targets = Metadata(Targets(expires=now + timedelta(days=90)))
    for dirpath, _, names in os.walk(release):
        for name in sorted(names):
            source = os.path.join(dirpath, name)
            path = os.path.relpath(source, release).replace(os.sep, "/")
            info = TargetFile.from_file(path, source, ["sha256"])
            sha = info.hashes["sha256"]
            folder, _, base = path.rpartition("/")
            dest_dir = os.path.join(targets_dir, folder)
            os.makedirs(dest_dir, exist_ok=True)
            shutil.copyfile(source, os.path.join(dest_dir, f"{sha}.{base}"))
            statement = encode_canonical({
                "domain": "herald-target-v1", "path": path,
                "length": info.length, "sha256": sha,
            }).encode()
            sig = release_key.sign(statement)
            info.unrecognized_fields["custom"] = {
                "x-herald-signatures": [{"keyid": sig.keyid, "sig": sig.signature}],
            }
            targets.signed.targets[path] = info
    targets.sign(keys["targets"])
    targets_bytes = targets.to_bytes(compact)
    with open(os.path.join(meta_dir, "1.targets.json"), "wb") as f:
        f.write(targets_bytes)

    snapshot = Metadata(Snapshot(expires=now + timedelta(days=7)))
    snapshot.signed.meta["targets.json"] = MetaFile(
        1, length=len(targets_bytes), hashes={"sha256": hashlib.sha256(targets_bytes).hexdigest()})
    snapshot.sign(keys["snapshot"])
    snapshot_bytes = snapshot.to_bytes(compact)
    with open(os.path.join(meta_dir, "1.snapshot.json"), "wb") as f:
        f.write(snapshot_bytes)

    timestamp = Metadata(Timestamp(expires=now + timedelta(days=1), snapshot_meta=MetaFile(
        1, length=len(snapshot_bytes), hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()})))
    timestamp.sign(keys["timestamp"])
    timestamp.to_file(os.path.join(meta_dir, "timestamp.json"), compact)


if __name__ == "__main__":
    main()
