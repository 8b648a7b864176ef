"""Decodes every cell of every column into Python values and encodes them
again into new columns."""

from wit_world.exports import transform
from wit_world.imports import types


def cells(column, rows):
    """Row values of a column as Python objects, None for nulls."""
    kind = column.values
    validity = column.validity
    out = []
    for i in range(rows):
        if validity is not None and not (validity[i // 8] >> (i % 8)) & 1:
            out.append(None)
        elif isinstance(kind, types.ColumnValues_Text):
            raw = kind.value.data.encode()
            out.append(raw[kind.value.offsets[i]:kind.value.offsets[i + 1]].decode())
        elif isinstance(kind, types.ColumnValues_Bytes):
            out.append(bytes(kind.value.data[kind.value.offsets[i]:kind.value.offsets[i + 1]]))
        else:
            out.append(kind.value[i])
    return out


def column(kind, values):
    """A column of the same kind from Python values."""
    validity = bytearray((len(values) + 7) // 8)
    nulls = False
    for i, v in enumerate(values):
        if v is None:
            nulls = True
        else:
            validity[i // 8] |= 1 << (i % 8)
    if isinstance(kind, (types.ColumnValues_Text, types.ColumnValues_Bytes)):
        text = isinstance(kind, types.ColumnValues_Text)
        data = bytearray()
        offsets = [0]
        for v in values:
            if v is not None:
                data += v.encode() if text else v
            offsets.append(len(data))
        if text:
            rebuilt = types.ColumnValues_Text(types.TextValues(offsets, data.decode()))
        else:
            rebuilt = types.ColumnValues_Bytes(types.BytesValues(offsets, bytes(data)))
    else:
        zero = {
            types.ColumnValues_Boolean: False,
            types.ColumnValues_Float: 0.0,
            types.ColumnValues_Uuid: (0, 0),
        }.get(type(kind), 0)
        rebuilt = type(kind)([zero if v is None else v for v in values])
    return types.ColumnData(rebuilt, bytes(validity) if nulls else None)


class Transformer(transform.Transformer):
    def __init__(self, schema):
        self.schema = schema

    @classmethod
    def open(cls, config, input):
        return cls(input)

    def output_schema(self):
        return self.schema

    def process(self, input):
        columns = [
            types.OutputColumn_Values(column(c.values, cells(c, input.len)))
            for c in input.columns
        ]
        return types.BatchResult(input.len, columns, list(range(input.len)), [])
