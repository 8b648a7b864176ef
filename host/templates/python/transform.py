"""{{name}}: upper-cases the text column named by the `column` setting and
drops rows where it is empty. Text columns are one UTF-8 string plus byte
offsets: cut values from the encoded bytes."""

from componentize_py_types import Err
from wit_world.exports import transform
from wit_world.imports import types


class Transformer(transform.Transformer):
    def __init__(self, schema, index):
        self.schema = schema
        self.index = index

    @classmethod
    def open(cls, config, input):
        column = dict(config).get("column")
        if column is None:
            raise Err("missing setting `column`")
        names = [c.name for c in input.columns]
        if column not in names:
            raise Err(f"table {input.name} has no column `{column}`")
        index = names.index(column)
        if not isinstance(input.columns[index].data_type, types.DataType_Text):
            raise Err(f"column `{column}` is not text")
        return cls(input, index)

    def output_schema(self):
        return self.schema

    def process(self, input):
        column = input.columns[self.index]
        values = column.values.value
        raw = values.data.encode()
        data, offsets, origin = bytearray(), [0], []
        validity = bytearray((input.len + 7) // 8)
        nulls = False
        for i in range(input.len):
            valid = column.validity is None or (column.validity[i // 8] >> (i % 8)) & 1
            text = raw[values.offsets[i]:values.offsets[i + 1]].decode() if valid else None
            if text == "":
                continue
            row = len(origin)
            origin.append(i)
            if text is None:
                nulls = True
            else:
                data += text.upper().encode()
                validity[row // 8] |= 1 << (row % 8)
            offsets.append(len(data))
        upper = types.ColumnData(
            types.ColumnValues_Text(types.TextValues(offsets, data.decode())),
            bytes(validity[: (len(origin) + 7) // 8]) if nulls else None,
        )
        columns = [
            types.OutputColumn_Values(upper) if i == self.index else types.OutputColumn_Unchanged(i)
            for i in range(len(self.schema.columns))
        ]
        return types.BatchResult(len(origin), columns, origin, [])
