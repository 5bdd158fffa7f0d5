"""Helpers for tests that check nothing on disk was lost or half-written."""

import os
from pathlib import Path


def snapshot(root):
    """{relative path: bytes, "<dir>" or "-> target" for symlinks} of everything under `root` (None if absent)."""
    root = Path(root)
    if not root.exists():
        return None
    if root.is_file():
        return root.read_bytes()
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                tree[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                tree[key] = "<dir>"
            else:
                tree[key] = path.read_bytes()
    return tree


def modes(root):
    """{relative path: permission bits} of everything under `root`, `root` itself as "."."""
    root = Path(root)
    out = {".": root.stat().st_mode & 0o777}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return out


def peak_rss_mib():
    """This process's peak resident memory so far (VmHWM of /proc/self/status), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
