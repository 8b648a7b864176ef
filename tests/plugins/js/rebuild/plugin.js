// A JavaScript identity transform that rebuilds every column from its
// values (nothing passed through): proves each column kind crosses both ways.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function valid(column, i) {
  return column.validity === undefined || ((column.validity[i >> 3] >> (i & 7)) & 1) === 1;
}

function cells(column, rows) {
  const { tag, val } = column.values;
  const raw = tag === 'text' ? encoder.encode(val.data) : null;
  const out = [];
  for (let i = 0; i < rows; i++) {
    if (!valid(column, i)) out.push(null);
    else if (tag === 'text') out.push(decoder.decode(raw.subarray(val.offsets[i], val.offsets[i + 1])));
    else if (tag === 'bytes') out.push(val.data.slice(val.offsets[i], val.offsets[i + 1]));
    else out.push(val[i]);
  }
  return out;
}

function rebuild(kind, values) {
  const validity = new Uint8Array((values.length + 7) >> 3);
  let nulls = false;
  values.forEach((v, i) => {
    if (v === null) nulls = true;
    else validity[i >> 3] |= 1 << (i & 7);
  });
  const { tag } = kind;
  let val;
  if (tag === 'text' || tag === 'bytes') {
    const parts = values.map((v) => (v === null ? new Uint8Array(0) : tag === 'text' ? encoder.encode(v) : v));
    const offsets = new Uint32Array(values.length + 1);
    let length = 0;
    parts.forEach((p, i) => {
      length += p.length;
      offsets[i + 1] = length;
    });
    const data = new Uint8Array(length);
    parts.forEach((p, i) => data.set(p, offsets[i]));
    val = { offsets, data: tag === 'text' ? decoder.decode(data) : data };
  } else if (tag === 'int' || tag === 'micros') {
    val = BigInt64Array.from(values.map((v) => (v === null ? 0n : BigInt(v))));
  } else if (tag === 'float') {
    val = Float64Array.from(values.map((v) => (v === null ? 0 : v)));
  } else if (tag === 'date') {
    val = Int32Array.from(values.map((v) => (v === null ? 0 : v)));
  } else if (tag === 'boolean') {
    val = values.map((v) => v === true);
  } else {
    val = values.map((v) => (v === null ? [0n, 0n] : [BigInt(v[0]), BigInt(v[1])]));
  }
  return { values: { tag, val }, validity: nulls ? validity : undefined };
}

class Transformer {
  constructor(schema) {
    this.schema = schema;
  }

  static open(config, input) {
    return new Transformer(input);
  }

  outputSchema() {
    return this.schema;
  }

  process(input) {
    const columns = input.columns.map((c) => ({ tag: 'values', val: rebuild(c.values, cells(c, input.len)) }));
    const origin = new Uint32Array(input.len);
    for (let i = 0; i < input.len; i++) origin[i] = i;
    return { len: input.len, columns, origin, rejects: [] };
  }
}

export const transform = { Transformer };
