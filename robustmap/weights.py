"""Read PyTorch state dicts without PyTorch and without trusting the pickle.

A ``.pth`` file is a pickle, and a pickle may name any importable callable: loading one with the
stock unpickler runs whatever the file asks for. :func:`read_torch_state_dict` instead resolves
every global the pickle names against a short allow-list of the names that tensor rebuilding
needs, each mapped to a reconstruction function of our own; any other name raises
:class:`UnsafePickleError` at the moment it is looked up, before anything is called.

Two container formats are understood:

* **legacy** (``torch.save(..., _use_new_zipfile_serialization=False)``): five consecutive
  pickles/records in one stream — magic number, protocol version, system info, the object pickle,
  the list of storage keys — followed, for each key in that list, by an int64 element count and
  the storage's raw little-endian bytes;
* **zip** (the default since torch 1.6): ``<root>/data.pkl`` holds the object pickle, and storage
  ``k`` lives in ``<root>/data/k`` as raw bytes.

In both, a tensor is pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)`` where ``storage`` is a persistent id ``('storage', StorageType, key, location, numel, ...)``.
Tensors come back as numpy arrays (C-contiguous copies, so views never alias each other).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TorchFormatError", "UnsafePickleError", "read_torch_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype (all little-endian, as torch writes them).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the tensor-rebuilding allow-list; nothing was run."""


class TorchFormatError(ValueError):
    """The file is not a torch checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<Dtype>Storage`` class: only its element dtype matters."""

    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    """A flat storage whose bytes may arrive after the object pickle (legacy format).

    ``offset`` and ``numel`` select a view (in elements) of the root storage ``key``.
    """

    key: str
    dtype: np.dtype
    offset: int = 0
    numel: int | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def elements(self) -> np.ndarray:
        """The storage's elements as a 1-D array of ``dtype``."""
        root = self.data[self.key].view(self.dtype)
        end = None if self.numel is None else self.offset + self.numel
        return root[self.offset : end]


@dataclass
class _TensorRef:
    """A tensor to materialise once every storage's bytes are known."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        elements = self.storage.elements()
        if not self.size:
            return elements[self.offset : self.offset + 1].reshape(()).copy()
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=elements.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= elements.size:
            raise TorchFormatError(
                f"tensor view (offset {self.offset}, size {self.size}, stride {self.stride}) "
                f"exceeds its storage of {elements.size} elements"
            )
        itemsize = elements.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            elements[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """Safe counterpart of ``torch._utils._rebuild_tensor(_v2)``: records the view only."""
    if not isinstance(storage, _Storage):
        raise TorchFormatError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, *_ignored) -> Any:
    """Safe counterpart of ``torch._utils._rebuild_parameter``: a parameter is its data."""
    return data


def _ordered_dict(*args) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


# The complete allow-list: (module, name) -> what the pickle gets instead of the real object.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only through ``_ALLOWED_GLOBALS``.

    ``storage_data`` maps storage keys to raw bytes (uint8 arrays); it may be filled after
    unpickling, since legacy files store the bytes after the object pickle.
    """

    def __init__(self, file, *, storage_data: dict[str, np.ndarray]):
        super().__init__(file)
        self.storage_data = storage_data
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            if module == "torch" and name.endswith("Storage"):
                raise TorchFormatError(f"unsupported tensor dtype: torch.{name}") from None
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: a tensor checkpoint needs only "
                "torch tensor/storage rebuilding, so this file may be malicious; nothing was run"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchFormatError(f"unsupported persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise TorchFormatError(f"unsupported storage type {storage_type!r}")
        root = self.storages.setdefault(
            key, _Storage(key, storage_type.dtype, numel=numel, data=self.storage_data)
        )
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return root
        # Legacy storage views: (view_key, offset in elements, numel of the view).
        _view_key, offset, view_numel = view
        return _Storage(key, root.dtype, int(offset), int(view_numel), self.storage_data)


def _materialise(obj: Any) -> Any:
    """Replace every ``_TensorRef`` inside dicts/lists/tuples by its numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _safe_load(stream: io.BufferedIOBase, storage_data: dict[str, np.ndarray]):
    unpickler = _RestrictedUnpickler(stream, storage_data=storage_data)
    return unpickler.load(), unpickler.storages


def _read_legacy(stream: io.BufferedIOBase) -> Any:
    """Parse the legacy single-stream format (see module docstring)."""
    header = _RestrictedUnpickler(stream, storage_data={})
    if header.load() != LEGACY_MAGIC_NUMBER:
        raise TorchFormatError("not a torch checkpoint: wrong magic number")
    protocol = header.load()
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise TorchFormatError(f"unsupported legacy protocol version {protocol!r}")
    system_info = header.load()
    if not system_info.get("little_endian", True):
        raise TorchFormatError("big-endian checkpoints are not supported")

    storage_data: dict[str, np.ndarray] = {}
    obj, storages = _safe_load(stream, storage_data)
    storage_keys = _RestrictedUnpickler(stream, storage_data={}).load()
    for key in storage_keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", stream.read(8))
        nbytes = count * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise TorchFormatError(f"storage {key} truncated: {len(raw)} of {nbytes} bytes")
        storage_data[str(key)] = np.frombuffer(raw, dtype=np.uint8)
    return _materialise(obj)


def _read_zip(path: Path) -> Any:
    """Parse the zip format: ``<root>/data.pkl`` plus ``<root>/data/<key>`` raw storages."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFormatError(f"{path}: expected one <root>/data.pkl, found {pickles}")
        root = pickles[0].split("/")[0]
        byteorder_name = f"{root}/byteorder"
        if byteorder_name in archive.namelist():
            if archive.read(byteorder_name).strip() != b"little":
                raise TorchFormatError("big-endian checkpoints are not supported")
        storage_data: dict[str, np.ndarray] = {}
        obj, storages = _safe_load(io.BytesIO(archive.read(pickles[0])), storage_data)
        for key in storages:
            raw = archive.read(f"{root}/data/{key}")
            storage_data[key] = np.frombuffer(raw, dtype=np.uint8)
    return _materialise(obj)


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state dict (legacy or zip format) into numpy arrays.

    Args:
        path: the checkpoint file.

    Returns:
        ``{parameter name: array}`` in the file's order, each array C-contiguous with the
        tensor's shape and dtype (e.g. float32 ``[out, in, kh, kw]`` for a convolution kernel).
        A checkpoint that wraps its state dict as ``{"state_dict": ...}`` is unwrapped.

    Raises:
        UnsafePickleError: the pickle names a global outside the tensor-rebuilding allow-list.
        TorchFormatError: the file is not a checkpoint in a format understood here.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _read_zip(path)
    else:
        with path.open("rb") as stream:
            obj = _read_legacy(stream)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TorchFormatError(f"{path}: expected a state dict, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise TorchFormatError(f"{path}: entries that are not tensors: {bad[:5]}")
    return {str(k): v for k, v in obj.items()}
