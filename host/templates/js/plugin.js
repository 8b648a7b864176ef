// {{name}}: upper-cases the text column named by the `column` setting and
// drops rows where it is empty. Text columns are one string plus UTF-8 byte
// offsets: cut values from the encoded bytes.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Transformer {
  constructor(schema, index) {
    this.schema = schema;
    this.index = index;
  }

  static open(config, input) {
    const column = new Map(config).get('column');
    if (column === undefined) throw 'missing setting `column`';
    const index = input.columns.findIndex((c) => c.name === column);
    if (index < 0) throw `table ${input.name} has no column \`${column}\``;
    if (input.columns[index].dataType.tag !== 'text') throw `column \`${column}\` is not text`;
    return new Transformer(input, index);
  }

  outputSchema() {
    return this.schema;
  }

  process(input) {
    const column = input.columns[this.index];
    const { offsets, data } = column.values.val;
    const raw = encoder.encode(data);
    const origin = [];
    const parts = [];
    const outOffsets = [0];
    const validity = new Uint8Array((input.len + 7) >> 3);
    let length = 0;
    let nulls = false;
    for (let i = 0; i < input.len; i++) {
      const valid = column.validity === undefined || ((column.validity[i >> 3] >> (i & 7)) & 1) === 1;
      const text = valid ? decoder.decode(raw.subarray(offsets[i], offsets[i + 1])) : null;
      if (text === '') continue;
      const row = origin.length;
      origin.push(i);
      if (text === null) {
        nulls = true;
      } else {
        const bytes = encoder.encode(text.toUpperCase());
        parts.push(bytes);
        length += bytes.length;
        validity[row >> 3] |= 1 << (row & 7);
      }
      outOffsets.push(length);
    }
    const joined = new Uint8Array(length);
    let at = 0;
    for (const part of parts) {
      joined.set(part, at);
      at += part.length;
    }
    const upper = {
      values: { tag: 'text', val: { offsets: new Uint32Array(outOffsets), data: decoder.decode(joined) } },
      validity: nulls ? validity.slice(0, (origin.length + 7) >> 3) : undefined,
    };
    const columns = this.schema.columns.map((_, i) =>
      i === this.index ? { tag: 'values', val: upper } : { tag: 'unchanged', val: i },
    );
    return { len: origin.length, columns, origin: new Uint32Array(origin), rejects: [] };
  }
}

export const transform = { Transformer };
