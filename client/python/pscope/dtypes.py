"""TensorFlow 1's DType objects for the four dtypes psd stores (SPEC §1), their `_ref` forms as
reference variables print them, and the names of dtypes pscope refuses (bool, string, float16, ...)
so that code naming them gets a clear error instead of an AttributeError.
"""
import numpy as np

from . import _lib


class DType:
    """tf.DType: `.name` ("float32", "float32_ref"), `.base_dtype`, `.as_numpy_dtype`,
    `str()` reads "<dtype: 'float32'>" as in TensorFlow's messages."""

    def __init__(self, name, enum, np_type, is_ref=False):
        self._name = name
        self._enum = enum
        self._np = np_type
        self._is_ref = is_ref

    @property
    def name(self):
        return self._name + "_ref" if self._is_ref else self._name

    @property
    def base_dtype(self):
        return _BY_NAME[self._name] if self._is_ref else self

    @property
    def _as_ref(self):
        return _REF[self._name]

    @property
    def is_ref_dtype(self):
        return self._is_ref

    @property
    def as_numpy_dtype(self):
        return self._np

    @property
    def as_datatype_enum(self):
        return self._enum

    @property
    def is_floating(self):
        return self._name in ("float16", "float32", "float64", "bfloat16")

    @property
    def is_integer(self):
        return self._name in ("int8", "int16", "int32", "int64", "uint8", "uint16")

    @property
    def size(self):
        return np.dtype(self._np).itemsize if self._np is not None else 1

    @property
    def stored(self):
        """Whether psd stores this dtype."""
        return self._name in _STORED

    def is_compatible_with(self, other):
        other = as_dtype(other)
        return self._enum == other._enum and (not other._is_ref or self._is_ref) or (
            self._name == other._name
        )

    def __eq__(self, other):
        if other is None:
            return False
        try:
            other = as_dtype(other)
        except TypeError:
            return False
        return self._name == other._name and self._is_ref == other._is_ref

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self._name, self._is_ref))

    def __repr__(self):
        return "tf." + self.name

    def __str__(self):
        return "<dtype: '%s'>" % self.name


_STORED = {
    "float32": (_lib.DTYPE_FLOAT32, np.float32),
    "float64": (_lib.DTYPE_FLOAT64, np.float64),
    "int32": (_lib.DTYPE_INT32, np.int32),
    "int64": (_lib.DTYPE_INT64, np.int64),
}
# TensorFlow dtypes psd does not store: named, so that using one fails with pscope's message.
_OTHER = {
    "float16": (19, np.float16),
    "bfloat16": (14, None),
    "int8": (6, np.int8),
    "int16": (5, np.int16),
    "uint8": (4, np.uint8),
    "uint16": (17, np.uint16),
    "bool": (10, np.bool_),
    "string": (7, np.object_),
    "complex64": (8, np.complex64),
    "complex128": (18, np.complex128),
}
_BY_NAME = {}
_REF = {}
for _n, (_e, _t) in list(_STORED.items()) + list(_OTHER.items()):
    _BY_NAME[_n] = DType(_n, _e, _t)
    _REF[_n] = DType(_n, _e + 100, _t, is_ref=True)

float32 = _BY_NAME["float32"]
float64 = _BY_NAME["float64"]
int32 = _BY_NAME["int32"]
int64 = _BY_NAME["int64"]
float16 = _BY_NAME["float16"]
half = float16
bfloat16 = _BY_NAME["bfloat16"]
int8 = _BY_NAME["int8"]
int16 = _BY_NAME["int16"]
uint8 = _BY_NAME["uint8"]
uint16 = _BY_NAME["uint16"]
bool = _BY_NAME["bool"]  # noqa: A001 (TensorFlow's name)
string = _BY_NAME["string"]
complex64 = _BY_NAME["complex64"]
complex128 = _BY_NAME["complex128"]
double = float64
float32_ref = _REF["float32"]
float64_ref = _REF["float64"]
int32_ref = _REF["int32"]
int64_ref = _REF["int64"]

_ALIASES = {"float": "float32", "double": "float64", "half": "float16"}
_BY_ENUM = {d._enum: d for d in list(_BY_NAME.values()) + list(_REF.values())}


def as_dtype(type_value):
    """tf.as_dtype: a DType from a DType, a name ("float32"), a NumPy dtype or type, or the C enum."""
    if isinstance(type_value, DType):
        return type_value
    if isinstance(type_value, str):
        name = _ALIASES.get(type_value, type_value)
        if name.endswith("_ref") and name[:-4] in _REF:
            return _REF[name[:-4]]
        if name in _BY_NAME:
            return _BY_NAME[name]
    elif isinstance(type_value, int) and not isinstance(type_value, type(True)):
        if type_value in _BY_ENUM:
            return _BY_ENUM[type_value]
    else:
        try:
            npd = np.dtype(type_value)
        except TypeError:
            npd = None
        if npd is not None:
            for d in _BY_NAME.values():
                if d._np is not None and np.dtype(d._np) == npd:
                    return d
    raise TypeError("Cannot convert value %r to a TensorFlow DType." % (type_value,))


def enum_of(dtype):
    """The C library's enum of a DType psd stores; ValueError naming the dtype otherwise."""
    d = as_dtype(dtype).base_dtype
    if d._name not in _STORED:
        raise ValueError(
            "pscope stores float32, float64, int32 and int64 variables; %s is not supported" % d
        )
    return d._enum


def from_enum(e):
    return _BY_ENUM[e]
