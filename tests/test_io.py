"""`keras_triplet._io.atomic_write`: the old file or the new one, never half of one."""

import os

import pytest

from keras_triplet._io import atomic_write


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "out.bin"
    with atomic_write(path) as f:
        f.write(b"first")
    with atomic_write(path) as f:
        f.write(b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failure_keeps_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, "w") as f:
        f.write("half of the new")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_permissions_are_kept_or_follow_the_umask(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_write(path, "w") as f:
        f.write("x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    os.chmod(path, 0o640)
    with atomic_write(path, "w") as f:
        f.write("y")
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_read_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'w'"), atomic_write(tmp_path / "x", "r"):
        pass
