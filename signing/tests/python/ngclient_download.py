"""Downloads targets from a Herald repository with python-tuf's ngclient over real HTTP.

Usage: ngclient_download.py REPO_DIR WORK_DIR TARGET_PATH...

Serves REPO_DIR with http.server on 127.0.0.1 (a free port), bootstraps the client with
REPO_DIR/metadata/1.root.json, refreshes, downloads every TARGET_PATH and prints a JSON object
{"root_version": N, "targets_version": N, "downloaded": {path: sha256}}. Exits 1 with the
error on stderr if python-tuf rejects anything.
"""

import functools
import hashlib
import json
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from tuf.ngclient import Updater


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> int:
    repo, work, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    handler = functools.partial(QuietHandler, directory=repo)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    metadata_dir = os.path.join(work, "metadata")
    target_dir = os.path.join(work, "downloads")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    with open(os.path.join(repo, "metadata", "1.root.json"), "rb") as f:
        bootstrap = f.read()
    try:
        updater = Updater(
            metadata_dir=metadata_dir,
            metadata_base_url=f"{base}/metadata/",
            target_dir=target_dir,
            target_base_url=f"{base}/targets/",
            bootstrap=bootstrap,
        )
        updater.refresh()
        downloaded = {}
        for path in paths:
            info = updater.get_targetinfo(path)
            if info is None:
                raise RuntimeError(f"target {path} not found")
            filepath = os.path.join(target_dir, path.replace("/", "_"))
            updater.download_target(info, filepath=filepath)
            with open(filepath, "rb") as f:
                downloaded[path] = hashlib.sha256(f.read()).hexdigest()
        trusted = updater._trusted_set  # noqa: SLF001 (versions for the report only)
        print(json.dumps({
            "root_version": trusted.root.version,
            "targets_version": trusted.targets.version,
            "downloaded": downloaded,
        }))
        return 0
    except Exception as e:  # noqa: BLE001 (report every rejection the same way)
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
