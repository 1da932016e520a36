"""The device side of an ssh copy: list what is there, receive what is not. Sent as source; stdlib only.

``hashes REL``: sha256 of every file under the device's bundle directory REL, and whether edge_bert is
importable for this Python. ``receive REL``: stdin holds one JSON header line (name, size, sha256 per
file) then the files' bytes; each file is written to a ``.partial`` file under ``.incoming/``,
checked against its size and sha256 and only then renamed into place, so an interrupted or corrupted
copy is never used.
"""

import hashlib
import importlib.util
import json
import os
import sys


def base():
    return os.environ.get("EDGE_BERT_DEVICE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "edge-bert", "device"
    )


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root, name):
    path = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or not path.startswith(root + os.sep):
        raise ValueError(f"refusing a path outside the bundle: {name!r}")
    return path


def hashes(root):
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = sha256(path)
    edge_bert = importlib.util.find_spec("edge_bert") is not None
    return {"dir": root, "files": found, "edge_bert": edge_bert, "python": sys.executable}


def receive(root):
    stream = sys.stdin.buffer
    header = json.loads(stream.readline())
    incoming = os.path.join(base(), ".incoming")
    os.makedirs(incoming, exist_ok=True)
    for item in header:
        dest = inside(root, item["name"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        # staged outside the bundle directory: a bundle holding an unlisted file is refused by the runner
        partial = os.path.join(incoming, hashlib.sha256(dest.encode()).hexdigest()[:16] + ".partial")
        digest, left = hashlib.sha256(), int(item["size"])
        with open(partial, "wb") as out:
            while left:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    return {"error": f"copy of {item['name']} interrupted after {int(item['size']) - left} bytes"}
                out.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        if digest.hexdigest() != item["sha256"]:
            return {"error": f"copy of {item['name']} arrived corrupted (sha256 mismatch)"}
        os.replace(partial, dest)
    return {"dir": root, "received": [item["name"] for item in header]}


if __name__ == "__main__":
    mode, rel = sys.argv[1], sys.argv[2]
    target = inside(base(), rel)
    try:
        os.makedirs(target, exist_ok=True)
        answer = hashes(target) if mode == "hashes" else receive(target)
    except OSError as exc:
        answer = {"error": f"{exc.strerror or exc} ({exc.filename or target})"}
    print(json.dumps(answer))
    sys.exit(3 if "error" in answer else 0)
