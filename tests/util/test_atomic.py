"""Atomic writes: the target is either the old or the new complete file."""

from __future__ import annotations

import os

import pytest

from returnn.util.atomic import atomic_dir, atomic_path, atomic_write, check_can_write


def test_atomic_write_replaces_file_on_success(tmp_path):
    path = tmp_path / "sub" / "lr.txt"
    with atomic_write(str(path)) as f:
        f.write("new")
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["lr.txt"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "lr.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["lr.txt"]


def test_atomic_path_for_binary_writers(tmp_path):
    path = tmp_path / "out.bin"
    with atomic_path(str(path)) as tmp:
        assert tmp != str(path) and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError):
        with atomic_path(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise ValueError("fail")
    assert path.read_bytes() == b"\x00\x01" and os.listdir(tmp_path) == ["out.bin"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(str(tmp_path / "a.txt")) as f:
            f.write("x")
        with atomic_path(str(tmp_path / "b.bin")) as tmp:
            open(tmp, "wb").close()
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "b.bin").st_mode & 0o777 == 0o644


def test_check_can_write_makes_folders_leaves_nothing_and_names_a_blocking_file(tmp_path):
    check_can_write(str(tmp_path / "a" / "b" / "out.txt"))
    assert os.listdir(tmp_path / "a" / "b") == []
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=r"'.*/f' is a file, not a folder"):
        check_can_write(str(tmp_path / "f" / "x" / "out.txt"))
    with pytest.raises(IsADirectoryError):
        check_can_write(str(tmp_path / "a"))


def test_atomic_dir_replaces_an_existing_folder_only_when_complete(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(str(target)) as tmp:
            open(os.path.join(tmp, "new.txt"), "w").close()
            raise RuntimeError("failed half way")
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(target) == ["old.txt"]
    with atomic_dir(str(target)) as tmp:
        open(os.path.join(tmp, "new.txt"), "w").close()
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(target) == ["new.txt"]
