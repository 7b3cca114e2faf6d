"""Content-addressed file store keyed by sha256, under the data directory.

A file is written to a temporary name, flushed to disk and renamed into place,
so a stored blob is always complete; writing the same content twice is a no-op.

Modes are set explicitly, whatever the umask of whoever stores a file (the dashboard, a worker,
an operator's ``kiemdiem submit``): files FILE_MODE (owner read/write, group read), folders
FOLDER_MODE (owner all, group read/enter), never anything for others: submitted documents are
confidential, and a folder others may write to would let them replace a stored file. A blob is
written once and never changed. Folders that already exist keep the mode they have.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

CHUNK = 1 << 20
FILE_MODE = 0o640
FOLDER_MODE = 0o750


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

    def _make_folder(self, folder: Path) -> None:
        """``folder`` and the missing ones above it (up to the root's parent), each FOLDER_MODE."""
        if folder.is_dir():
            return
        if folder != self.root:
            self._make_folder(folder.parent)
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)  # the data directory: not the store's to set
        try:
            os.mkdir(folder, FOLDER_MODE)  # never wider than FOLDER_MODE, even for an instant (umask 000)
        except FileExistsError:
            if not folder.is_dir():
                raise  # a file where the folder must go: the write cannot happen
            return  # made at the same moment by another process, which sets its mode
        os.chmod(folder, FOLDER_MODE)  # the umask may have narrowed it (077: the group could not enter)

    def _write(self, sha: str, chunks) -> None:
        target = self.path(sha)
        self._make_folder(target.parent)
        # mkstemp creates the file 0600 whatever the umask; its final mode is set before any content.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            os.fchmod(fd, FILE_MODE)
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
        _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """The rename itself on disk (a crash right after a submission keeps the file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some network file systems refuse fsync on a folder; the file itself is on disk
        pass
    finally:
        os.close(fd)
