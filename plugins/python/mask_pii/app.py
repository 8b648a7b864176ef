"""mask_pii in Python: the same masking as the Rust plugin's `mask` mode.

Built with componentize-py (`--stub-wasi`: the component imports nothing
but the host interface) by `make plugins`.
"""

from wit_world import exports


class Transform(exports.Transform):
    """The exported interface; its one resource is in transform.py."""
