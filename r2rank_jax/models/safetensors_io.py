"""Memory-mapped safetensors reading (single file or sharded index) and streaming writing.

Reading maps the files and slices tensors lazily, so a shard placed on a device reads only its own
bytes and the host never holds a second full copy of the model. bfloat16 is handled via ml_dtypes.
"""
from __future__ import annotations

import json
import pathlib
import struct
from typing import Iterable, Iterator

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint file or tensor that is missing, corrupt, or does not match the model."""


class SafetensorsFile:
    """One .safetensors file: header parsed eagerly, tensors as read-only memory maps."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        try:
            with open(self.path, "rb") as f:
                raw = f.read(8)
                if len(raw) != 8:
                    raise CheckpointError(f"{self.path}: truncated safetensors file (no header)")
                (n,) = struct.unpack("<Q", raw)
                size = self.path.stat().st_size
                if n > size - 8:
                    raise CheckpointError(f"{self.path}: corrupt safetensors header length {n} (file has {size} bytes)")
                header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{self.path}: corrupt safetensors header: {e}") from None
        self.metadata = header.pop("__metadata__", {}) or {}
        self._entries = header
        self._data_start = 8 + n
        data_len = size - self._data_start
        for name, e in header.items():
            if e.get("dtype") not in _DTYPES:
                raise CheckpointError(f"{self.path}: tensor {name!r} has unsupported dtype {e.get('dtype')!r}")
            begin, end = e["data_offsets"]
            expect = int(np.prod(e["shape"], dtype=np.int64)) * _DTYPES[e["dtype"]].itemsize
            if end - begin != expect or end > data_len:
                raise CheckpointError(f"{self.path}: tensor {name!r} data is truncated or inconsistent with its shape")
        self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r") if header else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def dtype(self, name: str) -> np.dtype:
        return _DTYPES[self._entries[name]["dtype"]]

    def array(self, name: str) -> np.ndarray:
        """A read-only memory-mapped view of one tensor (no bytes read until sliced)."""
        e = self._entries[name]
        begin, end = e["data_offsets"]
        buf = self._mmap[self._data_start + begin:self._data_start + end]
        return buf.view(_DTYPES[e["dtype"]]).reshape(e["shape"])


class SafetensorsCheckpoint:
    """All tensors of a HF checkpoint directory: `model.safetensors` or `model.safetensors.index.json`."""

    def __init__(self, directory: str | pathlib.Path):
        directory = pathlib.Path(directory)
        index = directory / "model.safetensors.index.json"
        single = directory / "model.safetensors"
        self._where: dict[str, SafetensorsFile] = {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
            files = {}
            for name, file in weight_map.items():
                if file not in files:
                    if not (directory / file).is_file():
                        raise CheckpointError(f"{index}: shard {file!r} (holding {name!r}) is missing")
                    files[file] = SafetensorsFile(directory / file)
                if name not in files[file].keys():
                    raise CheckpointError(f"{index}: tensor {name!r} is not in shard {file!r}")
                self._where[name] = files[file]
        elif single.is_file():
            f = SafetensorsFile(single)
            self._where = {name: f for name in f.keys()}
        else:
            raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")
        self.directory = directory

    def keys(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name].shape(name)

    def array(self, name: str) -> np.ndarray:
        return self._where[name].array(name)

    def file_of(self, name: str) -> pathlib.Path:
        return self._where[name].path


def _header(tensors: list[tuple[str, np.ndarray]], metadata: dict[str, str] | None) -> bytes:
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, arr in tensors:
        if arr.dtype not in _NAMES:
            raise CheckpointError(f"cannot write tensor {name!r}: unsupported dtype {arr.dtype}")
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def write_safetensors(path: str | pathlib.Path, tensors: Iterable[tuple[str, np.ndarray]],
                      metadata: dict[str, str] | None = None) -> None:
    """Writes tensors (name, array) in the given order; written to `path.tmp`, then renamed."""
    tensors = [(n, np.ascontiguousarray(a)) for n, a in tensors]
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    header = _header(tensors, metadata)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for _, arr in tensors:
            f.write(arr.tobytes())
    tmp.replace(path)


def plan_shards(sizes: list[tuple[str, int]], max_shard_bytes: int) -> Iterator[list[str]]:
    """Groups tensor names (in order) into shards of at most `max_shard_bytes` (a larger tensor stands alone)."""
    shard, total = [], 0
    for name, nbytes in sizes:
        if shard and total + nbytes > max_shard_bytes:
            yield shard
            shard, total = [], 0
        shard.append(name)
        total += nbytes
    if shard:
        yield shard
