"""The `transformer` resource of the dmp:transform contract, in Python.

Text columns arrive as one UTF-8 string plus byte offsets; Python strings
index by code point, so values are cut from the encoded bytes.
"""

from componentize_py_types import Err
from wit_world.exports import transform
from wit_world.imports import types


def mask(text):
    """`j***@example.com` for an e-mail address, `*******89` otherwise."""
    local, at, domain = text.rpartition("@")
    if at:
        return local[:1] + "***@" + domain
    keep = text[max(len(text) - 2, 0):]
    return "*" * max(len(text) - 2, 1) + keep


def read_texts(column, rows):
    """The values of a text column, None for nulls."""
    values = column.values.value
    raw = values.data.encode()
    validity = column.validity
    texts = []
    for i in range(rows):
        if validity is not None and not (validity[i // 8] >> (i % 8)) & 1:
            texts.append(None)
        else:
            texts.append(raw[values.offsets[i]:values.offsets[i + 1]].decode())
    return texts


def text_column(texts):
    """A text column (offsets in bytes) from values and Nones."""
    data = bytearray()
    offsets = [0]
    validity = bytearray((len(texts) + 7) // 8)
    nulls = False
    for i, text in enumerate(texts):
        if text is None:
            nulls = True
        else:
            data += text.encode()
            validity[i // 8] |= 1 << (i % 8)
        offsets.append(len(data))
    values = types.ColumnValues_Text(types.TextValues(offsets, data.decode()))
    return types.ColumnData(values, bytes(validity) if nulls else None)


class Transformer(transform.Transformer):
    def __init__(self, schema, targets):
        self.schema = schema
        self.targets = targets

    @classmethod
    def open(cls, config, input):
        settings = dict(config)
        wanted = [c.strip() for c in settings.get("columns", "").split(",") if c.strip()]
        if not wanted:
            raise Err("setting `columns` must name at least one column")
        mode = settings.get("mode", "mask")
        if mode != "mask":
            raise Err(f"setting `mode`: this plugin only masks, not `{mode}`")
        names = [c.name for c in input.columns]
        targets = set()
        for name in wanted:
            if name not in names:
                raise Err(f"table {input.name} has no column `{name}`")
            index = names.index(name)
            if not isinstance(input.columns[index].data_type, types.DataType_Text):
                raise Err(f"column `{name}` of table {input.name} is not text")
            targets.add(index)
        return cls(input, targets)

    def output_schema(self):
        return self.schema

    def process(self, input):
        rows = input.len
        columns = []
        for index in range(len(self.schema.columns)):
            if index in self.targets:
                texts = read_texts(input.columns[index], rows)
                masked = [None if t is None else mask(t) for t in texts]
                columns.append(types.OutputColumn_Values(text_column(masked)))
            else:
                columns.append(types.OutputColumn_Unchanged(index))
        return types.BatchResult(rows, columns, list(range(rows)), [])
