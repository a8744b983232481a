"""python-tuf's client (tuf.ngclient) doing what a herald-update benchmark scenario does.

Usage: bench_python_client.py METADATA_DIR METADATA_URL TARGETS_URL OUT_DIR ROOT [TARGET...]

Initialises METADATA_DIR with ROOT, refreshes, then downloads each TARGET into OUT_DIR.
"""

import os
import shutil
import sys

from tuf.ngclient import Updater, UpdaterConfig


def main(argv):
    md_dir, meta_url, targets_url, out_dir, root, *targets = argv[1:]
    os.makedirs(md_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(root, os.path.join(md_dir, "root.json"))
    config = UpdaterConfig(
        snapshot_max_length=256 * 1024 * 1024,
        targets_max_length=256 * 1024 * 1024,
    )
    updater = Updater(
        metadata_dir=md_dir,
        metadata_base_url=meta_url,
        target_base_url=targets_url,
        target_dir=out_dir,
        config=config,
    )
    updater.refresh()
    for name in targets:
        info = updater.get_targetinfo(name)
        if info is None:
            sys.exit(f"{name}: not found")
        updater.download_target(info)


if __name__ == "__main__":
    main(sys.argv)
