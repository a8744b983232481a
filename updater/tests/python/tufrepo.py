"""A TUF repository built with python-tuf's Metadata API, driven step by step from tests.

Usage: tufrepo.py DIR COMMAND [ARGS...]

DIR/published/ is what a server serves (metadata/ and targets/); DIR/state/ keeps the
private keys and the current metadata between commands. Commands:

  init [--no-consistent] [--expires-days N]
  add-target PATH CONTENT [--role ROLE] [--hashes ALG,...] [--corrupt-hash ALG]
                                             add a target listed with these hashes (default
                                             sha256; a corrupt one is of other content), publish
  delegate ROLE PATTERN [--terminating]      delegate PATTERN from targets to ROLE, publish
  rotate ROLE                                replace ROLE's key (root: new root version)
  threshold ROLE N                           give ROLE N keys and threshold N, publish
  sign-only ROLE K                           sign ROLE with only K of its keys from now on
  expire ROLE                                publish ROLE (and what lists it) already expired
  publish                                    new snapshot and timestamp versions
  timestamp-version N                        publish a timestamp with version N, not kept
  timestamp-same-version N                   republish the timestamp at its version, naming
                                             snapshot version N, not kept

Role names are percent-encoded in file names (published and kept) as python-tuf's client
quotes them: `quote(role, "")`, so `?` is `%3F.json` and `/x` is `%2Fx.json`.
"""

import copy
import datetime
import hashlib
import json
import os
import sys
from urllib.parse import quote, unquote

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner, SSlibKey
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

TOP = ("root", "timestamp", "snapshot", "targets")


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class Repo:
    def __init__(self, path):
        self.path = path
        self.state = os.path.join(path, "state")
        self.meta_dir = os.path.join(path, "published", "metadata")
        self.targets_dir = os.path.join(path, "published", "targets")

    # --- keys -------------------------------------------------------------------------
    def signers(self, role):
        with open(os.path.join(self.state, "keys.json")) as f:
            keys = json.load(f)
        limit = keys.get("sign_only", {}).get(role)
        out = []
        for pem in keys["roles"].get(role, []):
            priv = serialization.load_pem_private_key(pem.encode(), password=None)
            out.append(CryptoSigner(priv, SSlibKey.from_crypto(priv.public_key())))
        return out[:limit] if limit is not None else out

    def set_keys(self, role, signers, sign_only=None):
        path = os.path.join(self.state, "keys.json")
        keys = {"roles": {}, "sign_only": {}}
        if os.path.exists(path):
            with open(path) as f:
                keys = json.load(f)
        keys["roles"][role] = [
            s.private_bytes.decode() if isinstance(s.private_bytes, bytes) else s.private_bytes
            for s in signers
        ]
        if sign_only is not None:
            keys["sign_only"][role] = sign_only
        with open(path, "w") as f:
            json.dump(keys, f)

    def set_sign_only(self, role, k):
        path = os.path.join(self.state, "keys.json")
        with open(path) as f:
            keys = json.load(f)
        keys["sign_only"][role] = k
        with open(path, "w") as f:
            json.dump(keys, f)

    # --- metadata state ------------------------------------------------------------------
    def load(self, role):
        return Metadata.from_file(os.path.join(self.state, f"{quote(role, '')}.json"))

    def save(self, role, md):
        path = os.path.join(self.state, f"{quote(role, '')}.json")
        md.to_file(path, JSONSerializer(compact=False))

    def sign_and_publish(self, role, md, signer_role=None):
        md.signatures.clear()
        for signer in self.signers(signer_role or role):
            md.sign(signer, append=True)
        self.save(role, md)
        consistent = self.load_root_signed().consistent_snapshot
        os.makedirs(self.meta_dir, exist_ok=True)
        if role == "timestamp":
            name = "timestamp.json"
        elif role == "root":
            name = f"{md.signed.version}.root.json"
            md.to_file(os.path.join(self.meta_dir, "root.json"), JSONSerializer(compact=False))
        elif consistent:
            name = f"{md.signed.version}.{quote(role, '')}.json"
        else:
            name = f"{quote(role, '')}.json"
        md.to_file(os.path.join(self.meta_dir, name), JSONSerializer(compact=False))

    def load_root_signed(self):
        return self.load("root").signed

    def publish(self, expire=None):
        """New snapshot and timestamp versions listing the current targets roles."""
        snap = self.load("snapshot")
        snap.signed.version += 1
        for name in os.listdir(self.state):
            role = unquote(name[: -len(".json")])
            if name.endswith(".json") and role not in ("root", "timestamp", "snapshot", "keys"):
                version = self.load(role).signed.version
                snap.signed.meta[f"{role}.json"] = MetaFile(version=version)
        snap.signed.expires = self.expiry("snapshot", expire)
        self.sign_and_publish("snapshot", snap)
        ts = self.load("timestamp")
        ts.signed.version += 1
        ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
        ts.signed.expires = self.expiry("timestamp", expire)
        self.sign_and_publish("timestamp", ts)

    def expiry(self, role, expire):
        if expire == role:
            return now() - datetime.timedelta(days=1)
        return now() + datetime.timedelta(days=30)

    def bump(self, role, change, expire=None):
        md = self.load(role)
        change(md.signed)
        md.signed.version += 1
        md.signed.expires = self.expiry(role, expire)
        self.sign_and_publish(role, md)
        if role != "root":
            self.publish(expire)

    # --- commands ---------------------------------------------------------------------
    def init(self, consistent=True):
        os.makedirs(self.state, exist_ok=True)
        root = Root(expires=now() + datetime.timedelta(days=365))
        root.consistent_snapshot = consistent
        for role in TOP:
            signer = CryptoSigner.generate_ed25519()
            self.set_keys(role, [signer])
            root.add_key(signer.public_key, role)
        self.save("root", Metadata(root))
        self.sign_and_publish("root", Metadata(root))
        self.sign_and_publish("targets", Metadata(Targets(expires=now() + datetime.timedelta(days=30))))
        snap = Snapshot(expires=now() + datetime.timedelta(days=30))
        self.sign_and_publish("snapshot", Metadata(snap))
        ts = Timestamp(expires=now() + datetime.timedelta(days=1))
        self.sign_and_publish("timestamp", Metadata(ts))
        # A first complete publication: snapshot 2 / timestamp 2 listing targets 1.
        self.publish()

    def add_target(self, path, content, role="targets", hashes=("sha256",), corrupt=None):
        data = content.encode()
        target = TargetFile.from_data(path, data, list(hashes))
        if corrupt is not None:
            target.hashes[corrupt] = hashlib.new(corrupt, b"other content").hexdigest()
        consistent = self.load_root_signed().consistent_snapshot
        directory, base = os.path.split(path)
        # Under consistent snapshots the file is stored under each listed hash, as a
        # repository may serve it by any of them.
        names = [f"{h}.{base}" for h in target.hashes.values()] if consistent else [base]
        for name in names:
            dest = os.path.join(self.targets_dir, directory, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        self.bump(role, lambda t: t.targets.__setitem__(path, target))

    def delegate(self, role, pattern, terminating=False):
        signer = CryptoSigner.generate_ed25519()
        self.set_keys(role, [signer])

        def change(targets):
            if targets.delegations is None:
                targets.delegations = Delegations(keys={}, roles={})
            targets.delegations.keys[signer.public_key.keyid] = signer.public_key
            targets.delegations.roles[role] = DelegatedRole(
                name=role,
                keyids=[signer.public_key.keyid],
                threshold=1,
                terminating=terminating,
                paths=[pattern],
            )

        md = Metadata(Targets(expires=now() + datetime.timedelta(days=30)))
        self.sign_and_publish(role, md)
        self.bump("targets", change)

    def rotate(self, role):
        old_root_signers = self.signers("root")
        signer = CryptoSigner.generate_ed25519()
        root = self.load("root")
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(signer.public_key, role)
        root.signed.version += 1
        self.set_keys(role, [signer])
        root.signatures.clear()
        signers = {s.public_key.keyid: s for s in old_root_signers + self.signers("root")}
        for s in signers.values():
            root.sign(s, append=True)
        self.save("root", root)
        os.makedirs(self.meta_dir, exist_ok=True)
        root.to_file(os.path.join(self.meta_dir, f"{root.signed.version}.root.json"), JSONSerializer(compact=False))
        if role in ("timestamp", "snapshot", "targets"):
            if role == "targets":
                self.bump("targets", lambda t: None)
            else:
                self.publish()

    def threshold(self, role, n):
        signers = [CryptoSigner.generate_ed25519() for _ in range(n)]
        root = self.load("root")
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        for s in signers:
            root.signed.add_key(s.public_key, role)
        root.signed.roles[role].threshold = n
        old = self.signers("root")
        root.signed.version += 1
        self.set_keys(role, signers)
        root.signatures.clear()
        for s in {x.public_key.keyid: x for x in old + self.signers("root")}.values():
            root.sign(s, append=True)
        self.save("root", root)
        root.to_file(os.path.join(self.meta_dir, f"{root.signed.version}.root.json"), JSONSerializer(compact=False))
        self.bump("targets", lambda t: None) if role == "targets" else self.publish()

    def expire(self, role):
        if role in ("timestamp", "snapshot"):
            self.publish(expire=role)
        else:
            self.bump(role, lambda t: None, expire=role)


def main(argv):
    repo = Repo(argv[1])
    cmd, args = argv[2], argv[3:]
    if cmd == "init":
        repo.init(consistent="--no-consistent" not in args)
    elif cmd == "add-target":
        role = args[args.index("--role") + 1] if "--role" in args else "targets"
        hashes = args[args.index("--hashes") + 1].split(",") if "--hashes" in args else ["sha256"]
        corrupt = args[args.index("--corrupt-hash") + 1] if "--corrupt-hash" in args else None
        repo.add_target(args[0], args[1], role, hashes, corrupt)
    elif cmd == "delegate":
        repo.delegate(args[0], args[1], "--terminating" in args)
    elif cmd == "rotate":
        repo.rotate(args[0])
    elif cmd == "threshold":
        repo.threshold(args[0], int(args[1]))
    elif cmd == "sign-only":
        repo.set_sign_only(args[0], int(args[1]))
    elif cmd == "expire":
        repo.expire(args[0])
    elif cmd == "publish":
        repo.publish()
    elif cmd == "timestamp-version":
        ts = repo.load("timestamp")
        saved = copy.deepcopy(ts)
        ts.signed.version = int(args[0])
        repo.sign_and_publish("timestamp", ts)
        repo.save("timestamp", saved)
    elif cmd == "timestamp-same-version":
        ts = repo.load("timestamp")
        saved = copy.deepcopy(ts)
        ts.signed.snapshot_meta = MetaFile(version=int(args[0]))
        repo.sign_and_publish("timestamp", ts)
        repo.save("timestamp", saved)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
