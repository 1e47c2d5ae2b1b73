"""Reading PyTorch ``.pth`` files without PyTorch and without running pickled code.

``torch.save`` (PyTorch >= 1.6) writes a zip archive::

    <root>/data.pkl      the pickled object; tensors refer to storages by
                         persistent id ('storage', StorageType, key, location,
                         numel)
    <root>/data/<key>    one raw storage each (little endian unless
                         <root>/byteorder says 'big')
    <root>/version       format version (3)
    <root>/byteorder     'little' / 'big' (absent in files of older PyTorch:
                         read as little endian, what they were written on)

A pickle can name any importable callable (``os.system``) and have the
unpickler call it.  :class:`_StateDictUnpickler` therefore resolves globals
only from an allow-list -- the subset of what ``torch.load(weights_only=True)``
allows that a state dict needs (``collections.OrderedDict``, the tensor
rebuild functions, storage types, dtypes, ``torch.device``/``torch.Size``,
``set``/``bytearray``/``complex`` and latin-1 ``_codecs.encode`` for bytes) --
mapped to NumPy stand-ins.  Nothing else is ever imported or called.  Tensors
come back as C-contiguous ``np.ndarray`` copies with the tensor's dtype,
shape, strides and storage offset applied; ``requires_grad``, hooks and the
device (``location``: 'cpu', 'cuda:0', ...) are dropped.

The legacy (pre-1.6, non-zip) format -- torchvision's older model-zoo files
such as ``vgg19-dcbb9e9d.pth`` -- is read too, with the same allow-list: a
few plain header pickles, the object pickle, the storage keys, then the raw
storages (see :func:`_load_legacy`).

Every problem raises :class:`InputError` (one line, naming the file).
"""

import collections
import io
import pickle
import sys
import zipfile

import numpy as np

from ..errors import InputError, one_line

ZIP_MAGIC = b"PK\x03\x04"
# Pickle protocol 2 header + LONG1 of torch's legacy magic number
# 0x1950a86a20f9469cfc6c, the first object of a pre-1.6 torch.save file.
# Largest copy of an expanded (stride-0) tensor that is made.
MAX_REPEATED_BYTES = 1 << 30
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _bfloat16():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes comes with TF and JAX
        return None
    return np.dtype(ml_dtypes.bfloat16)


# torch legacy storage type name -> numpy dtype (None: not representable).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32,
    "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,
}
# torch dtype name (torch.float32 pickles as 'torch float32') -> numpy dtype.
_TORCH_DTYPES = {
    "float64": np.float64, "double": np.float64,
    "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16, "bfloat16": "bfloat16",
    "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32,
    "int16": np.int16, "short": np.int16, "int8": np.int8, "uint8": np.uint8,
    "bool": np.bool_, "complex64": np.complex64, "complex128": np.complex128,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
}


def _np_dtype(spec):
    if spec == "bfloat16":
        return _bfloat16()
    return np.dtype(spec)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. (only its dtype matters)."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


class _DType:
    """Stand-in for a ``torch.float32``-style dtype global."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _Storage:
    """One storage record as a flat array of its dtype."""

    def __init__(self, key, array):
        self.key, self.array = key, array


def _device(*args):
    return str(args[0]) if len(args) == 1 else ":".join(map(str, args))


def _size(*args):
    return tuple(*args)


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, path, archive, root, byteorder):
        super().__init__(file)
        self.path, self.archive, self.root = path, archive, root
        self.byteorder = byteorder
        self.storages = {}
        self.records = set(archive.namelist())

    # ------------------------------------------------------------ globals --
    def find_class(self, module, name):
        full = f"{module}.{name}"
        if module in ("builtins", "__builtin__"):
            found = {"set": set, "frozenset": frozenset,
                     "bytearray": bytearray, "complex": complex}.get(name)
            if found is not None:
                return found
        elif full == "collections.OrderedDict":
            return collections.OrderedDict
        elif full == "_codecs.encode":
            return _latin1_encode
        elif full == "torch.device":
            return _device
        elif full == "torch.Size":
            return _size
        elif module == "torch._utils":
            rebuild = {
                "_rebuild_tensor": self._rebuild_tensor,
                "_rebuild_tensor_v2": self._rebuild_tensor_v2,
                "_rebuild_tensor_v3": self._rebuild_tensor_v3,
                "_rebuild_parameter": _rebuild_parameter,
                "_rebuild_parameter_with_state": _rebuild_parameter,
            }.get(name)
            if rebuild is not None:
                return rebuild
            if name.startswith("_rebuild_"):
                raise InputError(self.path, f"holds a tensor rebuilt by {full} "
                                 "(quantized/sparse/nested/meta tensors are "
                                 "not supported; only dense tensors)")
        elif full == "torch._tensor._rebuild_from_type_v2":
            return self._rebuild_from_type_v2
        elif full in ("torch.Tensor", "torch.nn.parameter.Parameter"):
            return _TensorType(full)
        elif module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        elif module == "torch" and name in _TORCH_DTYPES:
            return _DType(name, _TORCH_DTYPES[name])
        raise InputError(self.path, f"refuses to unpickle {full} (only state "
                         "dicts are read: tensors, dicts, numbers, strings)")

    # ----------------------------------------------------------- storages --
    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5
                and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise InputError(self.path, f"unknown persistent id {pid!r:.80} "
                             "(not a torch.save storage reference)")
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key in self.storages:
            return self.storages[key]
        dtype = _np_dtype(storage_type.dtype)
        if dtype is None:  # pragma: no cover
            raise InputError(self.path, f"{storage_type} needs ml_dtypes "
                             "(bfloat16), which is not installed")
        record = f"{self.root}/data/{key}"
        if record not in self.records:
            raise InputError(self.path, f"storage record {record} is missing "
                             "(truncated or damaged archive)")
        try:
            raw = self.archive.read(record)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(self.path, f"cannot read storage record {record}"
                             f" ({one_line(exc)}): damaged archive") from None
        needed = int(numel) * dtype.itemsize
        if len(raw) < needed:
            raise InputError(self.path, f"storage record {record} is too short"
                             f" ({len(raw)} bytes, {needed} expected for "
                             f"{numel} x {storage_type}): truncated archive")
        array = np.frombuffer(raw, dtype=dtype.newbyteorder(
            "<" if self.byteorder == "little" else ">"), count=int(numel))
        storage = _Storage(key, array)
        self.storages[key] = storage
        return storage

    # ------------------------------------------------------------ tensors --
    def _tensor(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, _Storage):
            raise InputError(self.path, "a tensor's storage is not a storage "
                             "record (damaged pickle)")
        flat = storage.array
        if dtype is not None:  # _rebuild_tensor_v3: a view of another dtype
            flat = flat.view(_np_dtype(dtype.dtype))
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(offset)
        if len(size) != len(stride) or min(size + stride + (offset,),
                                            default=0) < 0:
            raise InputError(self.path, f"tensor on storage {storage.key} has "
                             f"an invalid layout (size {size}, stride "
                             f"{stride}, offset {offset})")
        if 0 in size:
            return np.zeros(size, flat.dtype.newbyteorder("="))
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise InputError(self.path, f"tensor of size {size} (stride "
                             f"{stride}, offset {offset}) reaches past the end "
                             f"of storage {storage.key} ({flat.size} "
                             "elements)")
        count = int(np.prod(size, dtype=np.int64))
        if count > flat.size and count * flat.itemsize > MAX_REPEATED_BYTES:
            # Stride-0 (expanded) tensors are views in torch; a copy this big
            # is refused rather than allocated.
            raise InputError(self.path, f"tensor of size {size} repeats its "
                             f"{flat.size}-element storage {storage.key} to "
                             f"{count * flat.itemsize} bytes; refused")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size,
            strides=[s * flat.itemsize for s in stride], writeable=False)
        # A C-contiguous, native-endian copy owning its memory.
        return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")

    def _rebuild_tensor(self, storage, offset, size, stride):
        return self._tensor(storage, offset, size, stride)

    def _rebuild_tensor_v2(self, storage, offset, size, stride,
                           requires_grad=False, backward_hooks=None,
                           metadata=None):
        return self._tensor(storage, offset, size, stride)

    def _rebuild_tensor_v3(self, storage, offset, size, stride,
                           requires_grad, backward_hooks, dtype,
                           metadata=None):
        if not isinstance(dtype, _DType):
            raise InputError(self.path, "a tensor's dtype is not a torch "
                             "dtype (damaged pickle)")
        return self._tensor(storage, offset, size, stride, dtype)

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        # Tensors and Parameters carrying Python attributes pickle this way;
        # the attributes (``state``) are dropped, the array is kept.
        if not isinstance(new_type, _TensorType):
            raise InputError(self.path, "refuses a tensor subclass (only "
                             "torch.Tensor and Parameter are read)")
        return func(*args)


class _TensorType:
    def __init__(self, name):
        self.name = name


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       state=None):
    return data


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); no
    # other codec (some run arbitrary code paths) is allowed.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _describe_non_zip(path, head):
    if head[:1] == b"\x80":
        return ("is a bare pickle, not a torch.save zip archive (only the zip "
                "format of PyTorch >= 1.6 is read)")
    if head.startswith(ZIP_MAGIC):
        return "is a damaged or truncated zip archive (no readable directory)"
    return "is not a PyTorch .pth file (not a zip archive)"


class _PlainUnpickler(pickle.Unpickler):
    """The small header pickles of the legacy format: numbers, strings,
    dicts and lists only."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        raise InputError(self.path, f"refuses to unpickle {module}.{name} in "
                         "a legacy torch.save header")


class _LegacyUnpickler(_StateDictUnpickler):
    """The object pickle of the legacy format.  Pass 1 (``data`` None)
    records the storages it references; pass 2 builds the tensors from
    ``data`` = {key: flat array}."""

    def __init__(self, file, path, data=None):
        pickle.Unpickler.__init__(self, file)
        self.path, self.data = path, data
        self.storages = {}  # key -> (storage type, numel)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6
                and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise InputError(self.path, f"unknown persistent id {pid!r:.80} "
                             "(not a legacy torch.save storage reference)")
        _, storage_type, key, _location, numel, view = pid
        key = str(key)
        self.storages.setdefault(key, (storage_type, int(numel)))
        if self.data is None:
            return None
        if key not in self.data:
            raise InputError(self.path, f"storage {key} is not in the file "
                             "(truncated?)")
        array = self.data[key]
        if view is not None:  # (view key, offset, size) of a storage view
            _, offset, size = view
            array = array[int(offset):int(offset) + int(size)]
        return _Storage(key, array)

    def _tensor(self, storage, offset, size, stride, dtype=None):
        if self.data is None:
            return None
        return super()._tensor(storage, offset, size, stride, dtype)


LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001


def _load_legacy(path):
    """A pre-1.6 ``torch.save`` file (torchvision's older model-zoo files,
    e.g. ``vgg19-dcbb9e9d.pth``): pickles of the magic number, the protocol
    version and ``sys_info``; the object pickle (storages as persistent
    ids ``('storage', type, key, location, numel, view)``); the list of
    storage keys; then each storage as an int64 element count and its raw
    bytes, in that order."""
    def plain(f):
        return _PlainUnpickler(f, path).load()

    try:
        with open(path, "rb") as f:
            if plain(f) != LEGACY_MAGIC_NUMBER or \
                    plain(f) != LEGACY_PROTOCOL_VERSION:
                raise InputError(path, "legacy torch.save header not "
                                 "understood (magic number / protocol)")
            info = plain(f)
            little = not isinstance(info, dict) or info.get("little_endian",
                                                            True)
            start = f.tell()
            scan = _LegacyUnpickler(f, path)
            scan.load()
            keys = [str(k) for k in plain(f)]
            data = {}
            for key in keys:
                if key not in scan.storages:
                    raise InputError(path, f"storage {key} is listed but "
                                     "never used (damaged file)")
                storage_type, numel = scan.storages[key]
                dtype = _np_dtype(storage_type.dtype).newbyteorder(
                    "<" if little else ">")
                count = np.frombuffer(f.read(8), "<i8" if little else ">i8")
                raw = f.read(int(numel) * dtype.itemsize)
                if count.size != 1 or len(raw) < int(numel) * dtype.itemsize:
                    raise InputError(path, f"storage {key} is cut short "
                                     "(truncated file)")
                data[key] = np.frombuffer(raw, dtype=dtype)
            f.seek(start)
            return _LegacyUnpickler(f, path, data).load()
    except InputError:
        raise
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or one_line(exc)}"
                         ) from None
    except RecursionError:
        raise InputError(path, "the pickle nests too deeply") from None
    except Exception as exc:  # pickle raises many types on bad data
        raise InputError(path, "cannot read this legacy torch.save file: "
                         f"{type(exc).__name__}: {one_line(exc)}") from None


def load_pth(path):
    """The object a ``torch.save`` file holds (zip, or the legacy pre-1.6
    format), tensors as ``np.ndarray``.

    ``torch.load(path, map_location='cpu', weights_only=True)`` on a state
    dict gives the same structure with torch tensors (bitwise equal).
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or one_line(exc)}"
                         ) from None
    if head.startswith(LEGACY_MAGIC):
        return _load_legacy(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise InputError(path, _describe_non_zip(path, head)) from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names
                   if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            if any(n.endswith("/constants.pkl") for n in names):
                raise InputError(path, "is a TorchScript archive "
                                 "(torch.jit.save), not a torch.save file")
            raise InputError(path, "is a zip archive but not a torch.save file"
                             f" ({'no' if not pickles else 'several'} "
                             "<root>/data.pkl records)")
        root = pickles[0].split("/", 1)[0]
        byteorder = "little"
        if f"{root}/byteorder" in names:
            try:
                byteorder = archive.read(f"{root}/byteorder").decode().strip()
            except (zipfile.BadZipFile, OSError, UnicodeDecodeError,
                    EOFError) as exc:
                raise InputError(path, f"cannot read {root}/byteorder "
                                 f"({one_line(exc)})") from None
            if byteorder not in ("little", "big"):
                raise InputError(path, f"unknown byte order {byteorder!r:.20}")
        try:
            data = archive.read(pickles[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(path, f"cannot read {pickles[0]} "
                             f"({one_line(exc)}): damaged archive") from None
        unpickler = _StateDictUnpickler(io.BytesIO(data), path, archive, root,
                                        byteorder)
        try:
            return unpickler.load()
        except InputError:
            raise
        except RecursionError:
            raise InputError(path, f"{pickles[0]} nests too deeply") from None
        except Exception as exc:  # pickle raises many types on bad data
            raise InputError(path, f"cannot unpickle {pickles[0]}: "
                             f"{type(exc).__name__}: {one_line(exc)}"
                             ) from None


def tensors(obj, prefix=""):
    """Flatten nested dicts of a loaded file to ``{dotted key: array}``
    (non-array leaves are left out)."""
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, np.ndarray):
                out[name] = value
            elif isinstance(value, dict):
                out.update(tensors(value, name + "."))
    return out


if __name__ == "__main__":  # pragma: no cover - a quick look at a file
    for arg in sys.argv[1:]:
        for k, v in tensors(load_pth(arg)).items():
            print(arg, k, v.dtype, v.shape)
