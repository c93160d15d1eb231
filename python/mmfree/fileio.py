"""Atomic, validated file writes: every file mmfree writes goes through here.

A write goes to a fresh temporary file in the target's own folder (``tempfile.mkstemp``: a unique
name, created with ``O_CREAT | O_EXCL``, so it never follows a planted symlink and two writers
never share it), is flushed and fsync'ed, optionally checked by a ``validate(tmp_path)`` callback
(for model files: the same loader users run), and only then renamed over the target with
``os.replace`` (atomic on POSIX; a symlink at the target is replaced, never followed). Any failure
on the way (a full disk, a validation error, Ctrl-C) removes the temporary file and leaves an
existing target untouched; ``OSError`` becomes :class:`mmfree.errors.OutputError` naming the file.

Board-side: standard library only, Python 3.10.
"""

import contextlib
import errno
import json
import os
import tempfile
from typing import Callable, Iterable, Iterator, Optional

from .errors import MMFreeError, OutputError

__all__ = ["atomic_path", "atomic_open", "write_bytes", "write_text", "write_json",
           "check_output_path", "is_within"]


def _describe(e: OSError) -> str:
    return e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e)


def check_output_path(path: str, inputs: Iterable[str] = (), input_dirs: Iterable[str] = ()) -> str:
    """Refuse an output path that cannot be written safely; return it unchanged.

    ``inputs``: files the writer reads (an output equal to one of them, by path or by inode, is
    refused); ``input_dirs``: folders the writer reads (an output inside one of them is refused).
    Also refused: an empty path, a NUL byte, an existing directory, a missing parent folder.
    """
    path = _fspath(path)
    if not path:
        raise OutputError("output path is empty")
    if "\0" in path:
        raise OutputError(f"output path {path!r} contains a NUL byte")
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file name for the output")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{path}: the folder {parent} does not exist")
    real_out = os.path.realpath(path)
    for d in input_dirs:
        d = os.fspath(d)
        if is_within(real_out, os.path.realpath(d)) or is_within(os.path.abspath(path), os.path.abspath(d)):
            raise OutputError(f"{path}: the output lies inside the input folder {d}; "
                              "write it somewhere else (it would overwrite or mix with the input)")
    for f in inputs:
        f = os.fspath(f)
        if os.path.realpath(f) == real_out:
            raise OutputError(f"{path}: the output is the input file {f}; write it somewhere else")
        with contextlib.suppress(OSError):
            if os.path.exists(path) and os.path.samefile(path, f):
                raise OutputError(f"{path}: the output is the same file as the input {f} (a link); "
                                  "write it somewhere else")
    return path


def _fspath(path) -> str:
    """A str path from str or os.PathLike; OutputError for anything else (bytes paths included)."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise OutputError(f"output path {path!r} is not a path") from None
    if not isinstance(p, str):
        raise OutputError(f"output path {path!r} is not a text path")
    return p


def is_within(path: str, folder: str) -> bool:
    """True when ``path`` equals ``folder`` or lies below it (lexically, both already normalised)."""
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    if path == folder:
        return True
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _file_mode(path: str) -> int:
    """The mode the finished file gets: an existing target's, else 0o666 minus the umask (what
    open() would give; mkstemp alone would leave 0o600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def new_temp(path: str):
    """(fd, temporary path) of a new, empty file beside ``path``: a unique name, created with
    O_CREAT | O_EXCL (never through a symlink), with the mode the target will have. OSError on failure."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, _file_mode(path))
    except OSError:
        os.close(fd)
        _remove_quietly(tmp)
        raise
    return fd, tmp


def _remove_quietly(p: str):
    with contextlib.suppress(OSError):
        os.unlink(p)


@contextlib.contextmanager
def atomic_path(path: str, validate: Optional[Callable[[str], None]] = None) -> Iterator[str]:
    """Yield the path of a new, empty temporary file next to ``path``; on a clean exit validate it
    and rename it over ``path``. For writers that insist on a file name (safetensors, matplotlib).

    The caller must write the file by that name only (it exists, is empty and is ours: O_EXCL).
    """
    path = _fspath(path)
    if not path or "\0" in path:
        raise OutputError(f"output path {path!r} is not a usable file name")
    if os.path.isdir(path):
        raise OutputError(f"{path}: is a directory; give a file name for the output")
    try:
        fd, tmp = new_temp(path)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_describe(e)}") from None
    try:
        yield tmp
        _fsync_path(tmp)
        if validate is not None:
            validate(tmp)
        _replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise OutputError(f"cannot write {path}: {_describe(e)}; nothing was changed"
                          + (" (the previous file is untouched)" if os.path.exists(path) else "")) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _fsync_path(p: str):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(tmp: str, path: str):
    os.replace(tmp, path)
    # make the rename durable; a folder that cannot be opened or synced (some filesystems) is fine
    with contextlib.suppress(OSError):
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", validate: Optional[Callable[[str], None]] = None,
                encoding: Optional[str] = None, newline: Optional[str] = None):
    """``with atomic_open(path, "w") as f: ...``: a file object on a temporary file that becomes
    ``path`` only when the block ends without an exception (and ``validate`` accepts it)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, validate=validate) as tmp:
        f = open(tmp, mode, encoding=encoding, newline=newline) if mode == "w" else open(tmp, mode)
        try:
            yield f
        except BaseException:
            with contextlib.suppress(OSError):
                f.close()  # a full disk fails the flush in close() too: the first error is the one to report
            raise
        f.close()


def write_bytes(path: str, data: bytes, validate: Optional[Callable[[str], None]] = None) -> None:
    with atomic_open(path, "wb", validate=validate) as f:
        f.write(data)


def write_text(path: str, text: str, validate: Optional[Callable[[str], None]] = None) -> None:
    with atomic_open(path, "w", validate=validate) as f:
        f.write(text)


def write_json(path: str, obj, indent: Optional[int] = 2, sort_keys: bool = False, default=None) -> None:
    """JSON (with a final newline), checked to read back as JSON before it replaces ``path``."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"

    def check(tmp):
        try:
            with open(tmp, "r", encoding="utf-8") as f:
                json.load(f)
        except ValueError as e:  # pragma: no cover - json.dumps output always parses
            raise MMFreeError(f"{path}: written JSON does not read back ({e})") from None

    write_text(path, text, validate=check)
