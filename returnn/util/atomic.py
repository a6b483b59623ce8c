"""Write files so that readers never see a half-written one: temp file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import IO, Iterator


def _temp_file_next_to(path: str) -> str:
    """Create an empty temp file beside ``path`` with the permissions a plain ``open`` would give."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes it private (0600); the result should not be
    return tmp_path


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to ``path``; on success fsync and rename it over ``path``, else delete it."""
    tmp_path = _temp_file_next_to(path)
    try:
        with open(tmp_path, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temp path next to ``path`` for a writer that opens files itself (h5py); rename on success."""
    tmp_path = _temp_file_next_to(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yield a new temp folder beside ``path`` to fill; on success it replaces ``path`` (an existing folder there
    is moved aside, then deleted), on failure it is deleted and ``path`` stays as it was."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(path)) + ".", suffix=".tmp", dir=parent)
    try:
        yield tmp_dir
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(path)) + ".", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "previous"))
        os.replace(tmp_dir, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def check_can_write(path: str) -> None:
    """Raise ``OSError`` unless ``path`` can be written as ``atomic_write`` does: creates missing parent
    folders, then creates and deletes a temp file beside ``path``; ``path`` itself must not be a folder."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{parent!r} is a file, not a folder")
    os.unlink(_temp_file_next_to(path))
