"""{{name}}: a DMP transform plugin in Python (the resource is in transform.py)."""

from wit_world import exports


class Transform(exports.Transform):
    """The exported interface."""
