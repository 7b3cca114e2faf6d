"""Content-addressed file store keyed by sha256, under the data directory.

A file is written to a temporary name, flushed to disk and renamed into place,
so a stored blob is always complete; writing the same content twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CHUNK = 1 << 20


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._write(sha, [data])
        return sha, len(data)

    def put_file(self, source: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        if not self.exists(sha):
            with open(source, "rb") as handle:
                self._write(sha, iter(lambda: handle.read(CHUNK), b""))
        return sha, size

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def _write(self, sha: str, chunks) -> None:
        target = self.path(sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha:
                raise OSError(f"file changed while being stored (expected {sha})")
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
