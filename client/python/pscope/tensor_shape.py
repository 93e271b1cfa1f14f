"""TensorFlow 1's TensorShape as far as variables use it: known or unknown rank, unknown
dimensions (None), compatibility as `TensorShape.is_compatible_with`, and TF1's printing
("()", "(1,)", "(5, 5)", "(?, 64)", "<unknown>").
"""


class TensorShape:
    def __init__(self, dims):
        if dims is None:
            self._dims = None
        elif isinstance(dims, TensorShape):
            self._dims = None if dims._dims is None else list(dims._dims)
        else:
            try:
                it = iter(dims)
            except TypeError:
                it = iter([dims])
            self._dims = [_as_dim(d) for d in it]

    @property
    def dims(self):
        return None if self._dims is None else list(self._dims)

    @property
    def ndims(self):
        return None if self._dims is None else len(self._dims)

    rank = ndims

    def as_list(self):
        if self._dims is None:
            raise ValueError("as_list() is not defined on an unknown TensorShape.")
        return list(self._dims)

    def is_fully_defined(self):
        return self._dims is not None and all(d is not None for d in self._dims)

    def num_elements(self):
        if not self.is_fully_defined():
            return None
        n = 1
        for d in self._dims:
            n *= d
        return n

    def is_compatible_with(self, other):
        other = as_shape(other)
        if self._dims is None or other._dims is None:
            return True
        if len(self._dims) != len(other._dims):
            return False
        return all(a is None or b is None or a == b for a, b in zip(self._dims, other._dims))

    def assert_is_compatible_with(self, other):
        if not self.is_compatible_with(other):
            raise ValueError("Shapes %s and %s are incompatible" % (self, as_shape(other)))

    def __len__(self):
        if self._dims is None:
            raise ValueError("Cannot take the length of shape with unknown rank.")
        return len(self._dims)

    def __iter__(self):
        if self._dims is None:
            raise ValueError("Cannot iterate over a shape with unknown rank.")
        return iter(self._dims)

    def __getitem__(self, key):
        if self._dims is None:
            return None
        return self._dims[key]

    def __eq__(self, other):
        try:
            other = as_shape(other)
        except (TypeError, ValueError):
            return NotImplemented
        return self._dims == other._dims

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self):
        return hash(None if self._dims is None else tuple(self._dims))

    def __str__(self):
        if self._dims is None:
            return "<unknown>"
        if len(self._dims) == 1:
            return "(%s,)" % _dim_str(self._dims[0])
        return "(%s)" % ", ".join(_dim_str(d) for d in self._dims)

    def __repr__(self):
        if self._dims is None:
            return "TensorShape(None)"
        return "TensorShape(%r)" % (self._dims,)


def _dim_str(d):
    return "?" if d is None else str(d)


def _as_dim(d):
    if d is None:
        return None
    if hasattr(d, "value"):  # a Dimension-like object
        d = d.value
        if d is None:
            return None
    try:
        v = int(d)
    except (TypeError, ValueError):
        raise TypeError("Dimension value must be integer or None, got value %r" % (d,)) from None
    if v != d:
        raise TypeError("Dimension value must be integer or None, got value %r" % (d,))
    if v < 0:
        raise ValueError("Dimension %d must be >= 0" % v)
    return v


def as_shape(shape):
    return shape if isinstance(shape, TensorShape) else TensorShape(shape)


def unknown_shape():
    return TensorShape(None)
