"""A test-only writer of PyTorch ``.pth`` files (torch.save's zip format),
so that the converter's bad cases can be made without PyTorch.

The pickle is emitted opcode by opcode (protocol 2, as torch.save writes):
dicts as ``collections.OrderedDict``, arrays as
``torch._utils._rebuild_tensor_v2(<persistent storage id>, offset, size,
stride, False, OrderedDict())`` (:class:`Strided` for other layouts), and
:class:`Call` as any global called with
arguments (to craft a forbidden one).  ``torch.load(weights_only=True)``
reads these files as it reads torch.save's (checked once when this was
written).
"""

import struct
import zipfile

import numpy as np

STORAGE_TYPES = {np.dtype(np.float32): "FloatStorage",
                 np.dtype(np.float64): "DoubleStorage",
                 np.dtype(np.float16): "HalfStorage",
                 np.dtype(np.int64): "LongStorage",
                 np.dtype(np.int32): "IntStorage",
                 np.dtype(np.uint8): "ByteStorage",
                 np.dtype(np.bool_): "BoolStorage"}


class Call:
    """Pickles as ``module.name(*args)``."""

    def __init__(self, module, name, *args):
        self.module, self.name, self.args = module, name, args


class Strided:
    """Pickles as a tensor viewing ``array``'s storage with any layout
    (``size``, ``stride`` in elements, ``offset``)."""

    def __init__(self, array, size, stride, offset=0):
        self.array, self.size = np.asarray(array), tuple(size)
        self.stride, self.offset = tuple(stride), offset


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(s):
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(items, emit):
    return b"(" + b"".join(emit(i) for i in items) + b"t"


def _pickle(obj, storages):
    def emit(o):
        if isinstance(o, dict):
            return (_global("collections", "OrderedDict") + b")R("
                    + b"".join(emit(k) + emit(v) for k, v in o.items())
                    + b"u")
        if isinstance(o, str):
            return _text(o)
        if isinstance(o, bool):
            return b"\x88" if o else b"\x89"
        if isinstance(o, int):
            return _int(o)
        if isinstance(o, Call):
            return _global(o.module, o.name) + _tuple(o.args, emit) + b"R"
        if isinstance(o, np.ndarray):
            stride = [int(np.prod(o.shape[i + 1:])) for i in range(o.ndim)]
            return emit(Strided(o.ravel(), o.shape, stride))
        if isinstance(o, Strided):
            a = o.array
            key = str(len(storages))
            flat = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"))
            storages[key] = flat.tobytes()
            pid = (b"(" + _text("storage")
                   + _global("torch", STORAGE_TYPES[a.dtype]) + _text(key)
                   + _text("cpu") + _int(a.size) + b"tQ")
            return (_global("torch._utils", "_rebuild_tensor_v2") + b"("
                    + pid + _int(o.offset) + _tuple(o.size, emit)
                    + _tuple(o.stride, emit) + b"\x89"
                    + _global("collections", "OrderedDict") + b")R" + b"tR")
        raise TypeError(f"cannot write {type(o).__name__}")
    return b"\x80\x02" + emit(obj) + b"."


def write_pth(path, obj, root="archive"):
    """Write ``obj`` (nested dicts of arrays, strings, ints, Calls) as a
    torch.save zip archive; returns ``path``."""
    storages = {}
    data = _pickle(obj, storages)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{root}/data.pkl", data)
        z.writestr(f"{root}/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"{root}/data/{key}", raw)
        z.writestr(f"{root}/version", "3\n")
    return path
