"""`atomic_write`: write a file so that readers see the old file or the new one, never half.

The library's files (an `EmbeddingIndex` archive, a figure's PNG) are written through it:
a crash, a full disk or Ctrl-C mid-write leaves the previous file intact and no
temporary file behind.
"""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Opens a temporary file next to `path`; on success moves it over `path`.

    The temporary file lives in the same directory (so `os.replace` is an atomic
    rename), is flushed and synced to disk before the rename, gets the permissions the
    file would have had (the existing file's, else `0o666` minus the umask, not
    `mkstemp`'s `0o600`), and the directory is synced after it so the rename itself
    survives a power cut. On any exception (including `KeyboardInterrupt`) the
    temporary file is removed and `path` is untouched.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_write(path, "w") as f:
    ...     _ = f.write("hello")
    >>> open(path).read(), sorted(os.listdir(os.path.dirname(path)))
    ('hello', ['notes.txt'])
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes a new file: `mode` must contain 'w', got {mode!r}.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_directory(directory)


def _file_mode(path):
    """The mode the written file gets: the existing file's, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_directory(directory):
    """Makes a rename in `directory` durable (not possible everywhere: then skipped)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path next to `path` for a writer that wants a file name (not a
    file object), such as `keras.Model.save`; on success moves it over `path`.

    The same guarantees as `atomic_write`: the file is synced, gets the permissions
    `path` would have had, replaces `path` atomically, and is removed on any exception.
    `suffix` ends the temporary name (`".keras"`: Keras checks the extension).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> with atomic_path(path, suffix=".keras") as tmp:
    ...     _ = open(tmp, "w").write("weights")
    >>> open(path).read(), sorted(os.listdir(os.path.dirname(path)))
    ('weights', ['model.keras'])
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=directory
    )
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_directory(directory)
