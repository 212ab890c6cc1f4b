"""Atomic file writes: nothing already written is lost if a run dies mid-write.

Every result, checkpoint, picture and report goes through these helpers: the data is written to a
temporary file in the destination folder and then renamed over the target, which is atomic on POSIX.
JSON-lines logs are appended a line at a time instead (:func:`append_jsonl`); a reader skips a torn
last line. Reading back: :func:`read_json_object` and :func:`check_format_version` give the one-line
errors every versioned file (``architecture.json``, checkpoints, a data folder's ``meta.json``) shares.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sparseconn.errors import SparseconnError


def _file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it: done once, at import, not per write
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file keeps the target's suffix so writers that infer the format from it
    (matplotlib, tifffile, PIL) work unchanged.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600; give the permissions a plain open() would
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new path would be created in)."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def _writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def _check_creatable(target: Path, option: str) -> None:
    """Refuse a ``target`` whose folder cannot be made or written: an ancestor that is a file, or a
    folder this process may not write into (``option`` names the setting in the message)."""
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise SparseconnError(f"{option} {str(target)!r}: {str(base)!r} is a file, not a folder")
    if not _writable(base):
        raise SparseconnError(f"cannot write {str(target)!r}: {str(base)!r} is not writable (Permission denied)")


def check_out_file(path: str | os.PathLike[str], *, force: bool = False, option: str = "--out") -> Path:
    """Check, before any work, that a file can be written at ``path``: not a folder, in a folder that can
    be made and written, and (without ``force``) no file already there, so that a finished export or
    architecture never replaces what the user had. Returns ``path``; one-line errors otherwise."""
    target = Path(path)
    if target.is_dir():
        raise SparseconnError(f"{option} {str(target)!r} is a folder; expected the path of a file to write")
    if target.exists() and not force:
        raise SparseconnError(f"{option} {str(target)!r} already exists; choose another {option} or pass --force "
                              "to overwrite it")
    _check_creatable(target, option)
    return target


def check_out_folder(path: str | os.PathLike[str], *, option: str = "--out", what: str = "a folder") -> Path:
    """Check, before any work, that ``path`` is or can become a folder this process writes into (not a
    file, no file among its ancestors, writable). Returns ``path``; one-line errors otherwise."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SparseconnError(f"{option} {str(folder)!r} is a file; expected {what}")
    if folder.is_dir():
        if not _writable(folder):
            raise SparseconnError(f"cannot write into {str(folder)!r}: Permission denied")
    else:
        _check_creatable(folder, option)
    return folder


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, innermost first: what a call that makes ``folder``
    creates, for :func:`remove_folders` to take back if the call fails."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_folders(made: list[Path]) -> None:
    """Remove the folders of :func:`missing_folders` again, innermost first, stopping at the first that is
    not empty (something in it is not this call's to remove)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error the checks did not foresee (a disk that filled up, a
    folder made read-only mid-run): the file and the system's reason, e.g. ``cannot write '/x':
    Permission denied``. Reading errors are reported where files are read, so what reaches here is a
    write; a file that vanished is named without a verb (it may have been either)."""
    name = exc.filename2 if exc.filename2 is not None else exc.filename  # os.replace(tmp, target): the target
    reason = exc.strerror or str(exc) or type(exc).__name__
    if name is None:
        return f"cannot write: {reason}"
    if isinstance(exc, FileNotFoundError):
        return f"{str(name)!r}: {reason}"
    return f"cannot write {str(name)!r}: {reason}"


def atomic_write(path: str | os.PathLike[str], writer: Callable[[IO[Any]], None], binary: bool = False) -> Path:
    """Call ``writer(fh)`` on a temporary file, fsync it, and rename it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line. Appends of a single short line are atomic enough for logs; a torn last
    line is skipped by :func:`read_jsonl`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[dict[str, Any]], bool]) -> None:
    """Atomically rewrite a JSON-lines log with only the records ``keep`` accepts (torn lines dropped)."""
    if Path(path).is_file():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in read_jsonl(path) if keep(r)))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines log, ignoring a torn (unparseable) final line left by a killed run."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
    return out


def read_json_object(path: str | os.PathLike[str], error: type[Exception] = SparseconnError) -> dict[str, Any]:
    """The JSON object stored in ``path``. Raises ``error`` with one line naming the file when it cannot be
    read, is not JSON or holds something other than an object; a missing file is the caller's to check
    (its message says what the file is for)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{p} cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


def check_format_version(version: Any, newest: int, what: str, source: str | os.PathLike[str],
                         error: type[Exception] = SparseconnError) -> int:
    """``version`` (the ``what`` read from ``source``) if it is an integer no newer than ``newest``, the
    newest this sparseconn reads; else ``error`` with one line naming ``source``."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(f"{source}: {what} must be an integer, got {version!r}")
    if version > newest:
        raise error(f"{source} has {what} {version}, newer than this sparseconn reads ({newest}); upgrade sparseconn")
    return version


def __getattr__(name: str) -> Any:
    if name == "atomic_write_bytes":
        raise AttributeError("sparseconn.fileio.atomic_write_bytes was removed (nothing used it); use "
                             "atomic_write(path, lambda fh: fh.write(data), binary=True)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
