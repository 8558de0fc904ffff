"""Atomic, byte-reproducible writers for every file robustmap produces.

Every output goes to a temporary file in the destination folder and is renamed into place, so a
killed job never leaves a half-written file that a later rule could consume. Parquet files are
written without wall-clock metadata, so the same frame gives the same bytes on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _umask() -> int:
    umask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(umask)
    return umask


# mkstemp and mkdtemp create owner-only files and folders, and a rename keeps that: what is
# staged there must get, before it is renamed into place, the permissions open() and mkdir()
# would give it, or results and datasets in a shared folder are unreadable to the user's group.
_UMASK = _umask()
_FILE_MODE = 0o666 & ~_UMASK
_FOLDER_MODE = 0o777 & ~_UMASK


def staging_folder(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target``, to be filled and then renamed onto it; it has the
    permissions ``mkdir`` would give ``target`` (the folder twin of :func:`atomic_path`)."""
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(staging, _FOLDER_MODE)
    return staging


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (stable bytes for equal objects)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    write_bytes(path, (text + "\n").encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write ``frame`` as Parquet atomically, without its index, with deterministic bytes."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_parquet`."""
    return pq.read_table(path).to_pandas()


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write compressed arrays atomically, readable by ``numpy.load``, with stable bytes.

    ``numpy.savez_compressed`` stamps each member with the wall clock; this writer fixes the
    timestamp so equal arrays give equal files.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
                archive.writestr(info, buffer.getvalue())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of a file written by :func:`write_npz` (pickles refused)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
