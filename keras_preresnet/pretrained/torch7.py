"""A strict reader of Torch7's binary serialisation format (``torch.save`` of Lua Torch).

The format (torch7 ``File.lua``): every object is a 4-byte type tag followed by its payload; tables and
Torch objects carry a reference index so shared objects (e.g. tensors sharing a storage) are written
once. Torch objects are ``"V <version>"``, the class name, and then either tensor/storage data or the
object's table of fields (nn modules).

Unlike a lenient reader, this one checks every length and count against the bytes actually left,
every tensor against the extent of its storage, and the nesting depth, so a truncated or corrupt
checkpoint is a ``Torch7Error`` within the time of one pass over the file, instead of garbage numbers,
a huge allocation or a hang. Tensors are read-only views of the file's bytes, never copies.
"""

import math
import re
import struct

import numpy as np

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION = 6, 7, 8

# Element types of the tensor and storage classes (CUDA classes are saved with the same layout).
_ELEMENT_TYPES = {
    "Byte": np.uint8, "Char": np.int8, "Short": np.int16, "Int": np.int32, "Long": np.int64,
    "Float": np.float32, "Double": np.float64, "Cuda": np.float32, "CudaDouble": np.float64,
    "CudaLong": np.int64, "CudaInt": np.int32, "CudaByte": np.uint8,
}
TENSOR_CLASSES = {f"torch.{k}Tensor": np.dtype(v) for k, v in _ELEMENT_TYPES.items()}
# An error quotes at most this many bytes of the file: a corrupt length must not make it megabytes long.
EXCERPT_BYTES = 80
# Torch class names and format versions ("V 1", "nn.SpatialConvolution", "cudnn.ReLU").
_CLASS_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]*|V [0-9.]+")
STORAGE_CLASSES = {f"torch.{k}Storage": np.dtype(v) for k, v in _ELEMENT_TYPES.items()}
# Tables and objects nested deeper than this are corruption: the released ResNet-200 nests about 25 deep.
MAX_NESTING = 200
MAX_DIMENSIONS = 64
MAX_CLASS_NAME = 256


class Torch7Error(ValueError):
    """The file is not a readable Torch7 checkpoint (truncated, corrupt or of an unsupported kind)."""


def excerpt(data):
    """``data`` as an error quotes it: its first ``EXCERPT_BYTES`` bytes, escaped, and its length."""
    data = bytes(data)
    shown = repr(data[:EXCERPT_BYTES])
    return shown if len(data) <= EXCERPT_BYTES else f"{shown}... ({len(data)} bytes)"


class TorchObject:
    """A Torch class instance other than a tensor: its class name, format version and fields."""

    def __init__(self, typename, version):
        self.typename = typename
        self.version = version
        self.fields = {}

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return f"TorchObject({self.typename!r}, fields={sorted(map(str, self.fields))})"


class LuaFunction:
    """A serialised Lua function: kept opaque (its bytecode is never run)."""

    def __init__(self, dumped, upvalues):
        self.dumped = dumped
        self.upvalues = upvalues


class _Reader:
    def __init__(self, data, name):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name
        self.objects = {}
        self.depth = 0

    def _take(self, n, what):
        if n < 0:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (negative {what} length {n} at byte {self.pos}).")
        end = self.pos + n
        if end > len(self.data):
            raise Torch7Error(
                f"{self.name}: the Torch7 file is truncated: reading {what} needs {n} bytes at byte "
                f"{self.pos}, but the file ends at byte {len(self.data)}. Download it again."
            )
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def int(self):
        return struct.unpack("<i", self._take(4, "an int"))[0]

    def long(self):
        return struct.unpack("<q", self._take(8, "a long"))[0]

    def longs(self, n):
        if n < 0 or n > MAX_DIMENSIONS:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (tensor with {n} dimensions).")
        return list(struct.unpack(f"<{n}q", self._take(8 * n, "tensor sizes")))

    def string(self):
        return bytes(self._take(self.int(), "a string"))

    def class_name(self):
        """A Torch class name or format version, checked before anything quotes or uses it."""
        start, length = self.pos, self.int()
        if not 0 < length <= MAX_CLASS_NAME:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (a class name of {length} bytes at byte {start}).")
        name = bytes(self._take(length, "a class name"))
        if not _CLASS_NAME.fullmatch(name):
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (the class name at byte {start} is {excerpt(name)}).")
        return name.decode("ascii")

    def object(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (objects nested over {MAX_NESTING} deep at byte "
                              f"{self.pos}).")
        try:
            return self._object()
        finally:
            self.depth -= 1

    def _object(self):
        kind = self.int()
        if kind == TYPE_NIL:
            return None
        if kind == TYPE_NUMBER:
            return struct.unpack("<d", self._take(8, "a number"))[0]
        if kind == TYPE_BOOLEAN:
            return self.int() == 1
        if kind == TYPE_STRING:
            return self.string().decode("utf-8", "replace")
        if kind not in (TYPE_TABLE, TYPE_TORCH, TYPE_FUNCTION, TYPE_RECUR_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION):
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (unknown type tag {kind} at byte {self.pos - 4}).")
        index = self.int()
        if index in self.objects:
            return self.objects[index]
        if kind == TYPE_TORCH:
            return self._torch(index)
        if kind == TYPE_TABLE:
            table = {}
            self.objects[index] = table
            size = self.int()
            # A key and a value take at least 4 bytes each (their type tags).
            if size < 0 or 8 * size > len(self.data) - self.pos:
                raise Torch7Error(f"{self.name}: corrupt Torch7 file (table of {size} entries at byte "
                                  f"{self.pos - 4}, with {len(self.data) - self.pos} bytes left).")
            for _ in range(size):
                where = self.pos
                key = self.object()
                table[_key(key, self.name, where)] = self.object()
            return table
        dumped = bytes(self._take(self.int(), "a function"))
        function = LuaFunction(dumped, None)
        self.objects[index] = function
        function.upvalues = self.object()
        return function

    def _torch(self, index):
        version_string = self.class_name()
        if version_string.startswith("V "):
            try:
                version = int(version_string[2:])
            except ValueError:
                raise Torch7Error(f"{self.name}: corrupt Torch7 file (version {version_string!r}).") from None
            typename = self.class_name()
        else:
            version, typename = 0, version_string
        if typename in STORAGE_CLASSES:
            dtype = STORAGE_CLASSES[typename]
            size = self.long()
            if size < 0:
                raise Torch7Error(f"{self.name}: corrupt Torch7 file (storage of size {size}).")
            raw = self._take(size * dtype.itemsize, f"a {typename} of {size} elements")
            storage = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
            self.objects[index] = storage
            return storage
        if typename in TENSOR_CLASSES:
            tensor = self._tensor(typename)
            self.objects[index] = tensor
            return tensor
        if typename.startswith("torch.") and ("Tensor" in typename or "Storage" in typename):
            raise Torch7Error(f"{self.name}: tensors of type {typename} are not supported; save the model "
                              "with :float() first.")
        obj = TorchObject(typename, version)
        self.objects[index] = obj
        fields = self.object()
        if not isinstance(fields, dict):
            raise Torch7Error(f"{self.name}: corrupt Torch7 file ({typename} without a table of fields).")
        obj.fields = fields
        return obj

    def _tensor(self, typename):
        ndim = self.int()
        sizes = self.longs(ndim)
        strides = self.longs(ndim)
        offset = self.long() - 1
        storage = self.object()
        dtype = TENSOR_CLASSES[typename]
        if ndim == 0 or storage is None:
            return np.zeros((0,), dtype)
        if not isinstance(storage, np.ndarray) or storage.dtype != dtype:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file ({typename} whose storage is not {dtype}).")
        if any(s < 0 for s in sizes) or any(s < 0 for s in strides) or offset < 0:
            raise Torch7Error(f"{self.name}: corrupt Torch7 file (tensor sizes {sizes}, strides {strides}).")
        # Overlapping (expanded) tensors never occur in a saved network; refusing them bounds every
        # tensor by its storage, which the file holds.
        elements = math.prod(sizes)
        if elements > storage.size or max(sizes + strides) > storage.size:
            raise Torch7Error(
                f"{self.name}: corrupt Torch7 file: a tensor of size {sizes} ({elements} elements), strides "
                f"{strides}, over a storage of {storage.size} elements."
            )
        if elements == 0:
            return np.zeros(sizes, dtype)
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
        if last >= storage.size:
            raise Torch7Error(
                f"{self.name}: corrupt Torch7 file: a tensor of size {sizes} reaches element {last} of a "
                f"storage of {storage.size} elements."
            )
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=sizes, strides=[s * dtype.itemsize for s in strides], writeable=False
        )
        return view.astype(dtype.newbyteorder("="), copy=False)


def _key(key, name, where):
    # Lua tables index with numbers and strings; integral numbers become ints (1-based, as in Lua).
    if key is None or (isinstance(key, float) and math.isnan(key)):
        raise Torch7Error(f"{name}: corrupt Torch7 file (a table key that is {key} at byte {where}).")
    if isinstance(key, float) and key.is_integer():
        return int(key)
    if isinstance(key, (str, bool, float)):
        return key
    # A table or object used as a key: keep it by identity.
    return id(key)


def load(path):
    """Reads a Torch7 binary file (``torch.save(path, obj)``) into Python objects.

    Tables become dicts (integer keys stay 1-based), tensors numpy arrays, nn modules ``TorchObject``s.
    Raises ``Torch7Error`` for a truncated or corrupt file and ``OSError`` if it cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    reader = _Reader(data, str(path))
    obj = reader.object()
    if reader.pos != len(data):
        raise Torch7Error(
            f"{path}: corrupt Torch7 file: {len(data) - reader.pos} unexpected bytes after the object."
        )
    return obj


def sequence(table):
    """The values of a Lua array table (keys 1..n) as a list; raises if it is not one."""
    if table is None:
        return []
    keys = list(table) if isinstance(table, dict) else None
    if keys is None or not all(isinstance(k, int) for k in keys) or sorted(keys) != list(range(1, len(keys) + 1)):
        raise Torch7Error("expected a Lua array (keys 1..n) of modules.")
    return [table[i] for i in range(1, len(table) + 1)]
