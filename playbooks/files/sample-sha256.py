"""Run on the backed-up host after `restic backup --json`: SHA-256 and size of a stable sample
of the files under the given paths, for the run's manifest (drills compare restores with it).

Usage: sample-sha256.py <restic json output> <count> <path>...; prints {"path": [size, sha256]}.
The sample is chosen by a hash of (snapshot short id, path), so it differs between runs.
"""

import hashlib
import json
import os
import sys


def snapshot_id(output: str) -> str:
    with open(output, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"message_type":"summary"' in line:
                return str(json.loads(line).get("snapshot_id", ""))
    return ""


def files(paths: list[str]) -> list[str]:
    found = []
    for top in paths:
        if os.path.isfile(top) and not os.path.islink(top):
            found.append(top)
        for root, _dirs, names in os.walk(top):
            found += [p for p in (os.path.join(root, n) for n in names) if os.path.isfile(p) and not os.path.islink(p)]
    return found


def digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    output, count, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sid = snapshot_id(output)
    sums: dict[str, list[object]] = {}
    if sid:
        chosen = sorted(files(paths), key=lambda p: hashlib.sha256(f"{sid}|{p}".encode()).digest())[:count]
        for path in chosen:
            try:
                sums[path] = [os.path.getsize(path), digest(path)]
            except OSError:
                continue
    sys.stdout.write(json.dumps(sums) + "\n")


main()
