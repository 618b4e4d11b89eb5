"""A fair-esm .pt file's structure with tensor shapes, read without torch (standard library only).

torch.save (since 1.6) writes a zip: `<root>/data.pkl` (pickle protocol 2) holds the structure,
`<root>/data/<key>` each storage's raw bytes. `read(path)` unpickles data.pkl with only what a
fair-esm checkpoint holds (OrderedDict, argparse.Namespace, tensors rebuilt by
torch._utils._rebuild_tensor_v2 or _rebuild_parameter from the storage types below) and returns
it with every tensor as a `Shape`; no storage byte is read. Importing torch costs 1-3 s, which
the orchestrator's shape probe (probe.py) pays before every run otherwise.

It answers only where torch.load(weights_only=True) would read the same structure: the opcodes,
globals and BUILD/SETITEM targets torch's weights-only unpickler accepts, a format version torch
writes, every storage record present, uncompressed, and large enough for its tensors. Anything
else (a legacy non-zip pickle, another global, a damaged zip, an odd tensor) is `None`: the
caller then asks torch, whose refusal is the one users see.
"""
from __future__ import annotations

import argparse
import io
import pickle
import struct
import zipfile
from collections import OrderedDict

# storage type -> bytes per element (torch.<Name>Storage; what torch.save names in a storage's id)
_STORAGES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
             "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
             "ByteStorage": 1, "BoolStorage": 1}
_FLOATING = {"DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage"}
# The opcodes torch's weights-only unpickler interprets that a protocol-2 torch.save emits
# (torch/_weights_only_unpickler.py); a pickle using any other is left to torch.
_OPCODES = {pickle.GLOBAL, pickle.NEWOBJ, pickle.REDUCE, pickle.BUILD, pickle.APPEND, pickle.APPENDS,
            pickle.SETITEM, pickle.SETITEMS, pickle.MARK, pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2,
            pickle.TUPLE3, pickle.NONE, pickle.NEWFALSE, pickle.NEWTRUE, pickle.EMPTY_TUPLE,
            pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.BININT, pickle.BININT1, pickle.BININT2,
            pickle.BINFLOAT, pickle.BINUNICODE, pickle.BINPERSID, pickle.BINGET, pickle.LONG_BINGET,
            pickle.BINPUT, pickle.LONG_BINPUT, pickle.LONG1, pickle.PROTO, pickle.STOP}
_VERSIONS = {b"1", b"2", b"3"}  # the zip format versions torch.save writes (torch reads 1..10)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # a zip local file header: signature ... name, extra lengths


class NotRecognised(Exception):
    """The file is outside what this reader vouches for; torch.load decides."""


class Shape:
    """A tensor as data.pkl describes it: its shape, and whether its dtype is floating point."""
    __slots__ = ("shape", "floating")

    def __init__(self, shape: tuple[int, ...], floating: bool):
        self.shape, self.floating = shape, floating


class _StorageType:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Storage:
    __slots__ = ("kind", "numel")

    def __init__(self, kind: _StorageType, numel: int):
        self.kind, self.numel = kind, numel


def _ints(v, what: str) -> tuple[int, ...]:
    if type(v) is not tuple or not all(type(x) is int and x >= 0 for x in v):
        raise NotRecognised(f"{what} {v!r}")
    return v


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    """What torch._utils._rebuild_tensor_v2 would build, as a Shape, where torch's set_ would
    accept the view (it lies inside the storage) and no hooks or metadata come with it."""
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if (type(storage) is not _Storage or type(offset) is not int or offset < 0 or len(size) != len(stride)
            or type(requires_grad) is not bool or type(hooks) not in (dict, OrderedDict) or hooks or metadata):
        raise NotRecognised("a tensor outside the plain kind torch.save writes for a state dict")
    floating = storage.kind.name in _FLOATING
    if requires_grad and not floating:
        raise NotRecognised("an integer tensor that requires grad")
    if 0 in size:  # empty tensors: bounds rules not worth mirroring, and ESM-2 has none
        raise NotRecognised("an empty tensor")
    if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel:
        raise NotRecognised("a tensor beyond its storage")
    return Shape(size, floating)


def _rebuild_parameter(data, requires_grad, hooks):
    if type(data) is not Shape or type(requires_grad) is not bool or type(hooks) not in (dict, OrderedDict) or hooks:
        raise NotRecognised("a parameter outside the plain kind")
    if requires_grad and not data.floating:
        raise NotRecognised("an integer parameter that requires grad")
    return data


_GLOBALS = {("collections", "OrderedDict"): OrderedDict, ("argparse", "Namespace"): argparse.Namespace,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            **{("torch", name): _StorageType(name) for name in _STORAGES}}
_CALLABLE = {id(f) for f in (OrderedDict, argparse.Namespace, _rebuild_tensor_v2, _rebuild_parameter)}


def _onto(types: tuple, at: int | None, load):
    """An opcode that fills a container, run only where the container is one of `types` (as
    torch's unpickler checks): the one at stack[at], or (at None) the one below the last MARK."""
    def checked(self):
        target = self.stack[at] if at is not None else self.metastack[-1][-1]
        if type(target) not in types:
            raise NotRecognised(f"filling a {type(target).__name__}")
        load(self)
    return checked


class _Unpickler(pickle._Unpickler):  # the Python one: its opcode table can be narrowed and checked
    dispatch = {op[0]: f for op, f in ((op, pickle._Unpickler.dispatch[op[0]]) for op in _OPCODES)}

    def __init__(self, data: bytes, storage_bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._storage_bytes = storage_bytes  # key -> bytes in the zip record (None: no such record)
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) not in _GLOBALS:
            raise NotRecognised(f"global {module}.{name}")
        return _GLOBALS[(module, name)]

    def persistent_load(self, pid):
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise NotRecognised(f"persistent id {pid!r}")
        kind, key, location, numel = pid[1:]
        if type(kind) is not _StorageType or type(key) is not str or type(location) is not str or type(numel) is not int or numel < 0:
            raise NotRecognised(f"storage id {pid!r}")
        if key not in self._storages:
            have = self._storage_bytes(key)
            if have is None or have < numel * _STORAGES[kind.name]:
                raise NotRecognised(f"storage data/{key} missing or short")
            self._storages[key] = _Storage(kind, numel)
        got = self._storages[key]
        if got.kind is not kind or got.numel != numel:
            raise NotRecognised(f"storage data/{key} named twice with different types")
        return got

    # torch's checks on the opcodes that act on an object already built
    def _reduce(self):
        if id(self.stack[-2]) not in _CALLABLE:
            raise NotRecognised(f"a call of {type(self.stack[-2]).__name__}")
        pickle._Unpickler.load_reduce(self)

    def _newobj(self):
        if self.stack[-2] not in (OrderedDict, argparse.Namespace):
            raise NotRecognised("NEWOBJ of another class")
        pickle._Unpickler.load_newobj(self)

    def _build(self):
        if type(self.stack[-2]) not in (OrderedDict, argparse.Namespace) or type(self.stack[-1]) is not dict:
            raise NotRecognised("BUILD of another object")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.REDUCE[0]] = _reduce
    dispatch[pickle.NEWOBJ[0]] = _newobj
    dispatch[pickle.BUILD[0]] = _build
    dispatch[pickle.SETITEM[0]] = _onto((dict, OrderedDict), -3, pickle._Unpickler.load_setitem)
    dispatch[pickle.SETITEMS[0]] = _onto((dict, OrderedDict), None, pickle._Unpickler.load_setitems)
    dispatch[pickle.APPEND[0]] = _onto((list,), -2, pickle._Unpickler.load_append)
    dispatch[pickle.APPENDS[0]] = _onto((list,), None, pickle._Unpickler.load_appends)


def read(path: str):
    """data.pkl's object with tensors as Shapes, or None where torch.load must decide."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # torch's own test for its zip format
                return None
            size = f.seek(0, io.SEEK_END)
            with zipfile.ZipFile(f) as z:
                return _read_zip(z, f, size)
    except (NotRecognised, zipfile.BadZipFile, pickle.UnpicklingError, OSError, EOFError, ValueError,
            TypeError, KeyError, AttributeError, IndexError, struct.error, UnicodeDecodeError):
        return None


def _read_zip(z: zipfile.ZipFile, f, size: int):
    infos = z.infolist()
    root = infos[0].filename.split("/")[0] if infos and "/" in infos[0].filename else None
    names = {i.filename: i for i in infos}
    if root is None or f"{root}/constants.pkl" in names:  # a TorchScript archive: torch.load's own message
        raise NotRecognised("no root folder, or TorchScript")
    version = next((z.read(n).strip() for n in (f"{root}/.data/version", f"{root}/version") if n in names), None)
    byteorder = z.read(f"{root}/byteorder") if f"{root}/byteorder" in names else b"little"
    if version not in _VERSIONS or byteorder not in (b"little", b"big"):
        raise NotRecognised(f"format version {version!r}, byte order {byteorder!r}")

    def storage_bytes(key: str) -> int | None:
        """How many bytes data/<key> holds, where torch would find them: stored, whole, in the file."""
        info = names.get(f"{root}/data/{key}")
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            return None
        f.seek(info.header_offset)
        sig, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        return info.file_size if sig == b"PK\x03\x04" and start + info.file_size <= size else None

    data = z.read(f"{root}/data.pkl")
    return _Unpickler(data, storage_bytes).load()
