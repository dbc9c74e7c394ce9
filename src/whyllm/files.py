"""Writing output files atomically: a report is either complete or not there.

Every file whyllm writes for a user (``--json``/``--html``/``--png`` outputs, ``to_json``, ``to_html``,
``to_parquet``, ``save_png``) goes to a temporary file in the same folder, is flushed to disk, and is
renamed over the target. An unwritable path is one :class:`~whyllm.errors.InputError` naming it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from whyllm.errors import InputError

__all__ = ["check_writable", "write_atomic"]


def check_writable(path: str | Path, what: str = "file") -> Path:
    """``path`` as a :class:`Path` if a file can be written there (a cheap check before long work)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write the {what} to {str(path)!r}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise InputError(f"cannot write the {what} to {str(path)!r}: the folder {str(path.parent)!r} "
                         "does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write the {what} to {str(path)!r}: no permission to write in "
                         f"{str(path.parent)!r}")
    return path


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], None], what: str = "file") -> Path:
    """Write ``data`` (text, bytes, or a function writing to the path it is given) to ``path`` atomically.

    Raises:
        InputError: ``path`` is a folder, its folder does not exist, or the write fails (disk full,
            no permission...); nothing is left behind then.
    """
    path = check_writable(path, what)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str | bytes):
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        if callable(data):
            data(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise InputError(f"cannot write the {what} to {str(path)!r}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path
