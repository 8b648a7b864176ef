"""A Python identity transform that rebuilds every column from its values
(nothing passed through): proves each column kind crosses both ways."""

from wit_world import exports


class Transform(exports.Transform):
    """The exported interface; the resource is in transform.py."""
