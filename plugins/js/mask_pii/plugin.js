// mask_pii in JavaScript: the same masking as the Rust plugin's `mask` mode.
//
// Text columns arrive as one string plus UTF-8 byte offsets; JavaScript
// strings are UTF-16, so values are cut from the encoded bytes.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function mask(text) {
  const chars = Array.from(text);
  const at = text.lastIndexOf('@');
  if (at >= 0) {
    const local = Array.from(text.slice(0, at));
    return `${local.slice(0, 1).join('')}***@${text.slice(at + 1)}`;
  }
  const keep = chars.slice(Math.max(chars.length - 2, 0)).join('');
  return '*'.repeat(Math.max(chars.length - 2, 1)) + keep;
}

function isValid(column, row) {
  const bits = column.validity;
  return bits === undefined || ((bits[row >> 3] >> (row & 7)) & 1) === 1;
}

function readTexts(column, rows) {
  const { offsets, data } = column.values.val;
  const raw = encoder.encode(data);
  const texts = [];
  for (let i = 0; i < rows; i++) {
    texts.push(isValid(column, i) ? decoder.decode(raw.subarray(offsets[i], offsets[i + 1])) : null);
  }
  return texts;
}

function textColumn(texts) {
  const parts = [];
  const offsets = new Uint32Array(texts.length + 1);
  const validity = new Uint8Array((texts.length + 7) >> 3);
  let length = 0;
  let nulls = false;
  texts.forEach((text, i) => {
    if (text === null) {
      nulls = true;
    } else {
      const bytes = encoder.encode(text);
      parts.push(bytes);
      length += bytes.length;
      validity[i >> 3] |= 1 << (i & 7);
    }
    offsets[i + 1] = length;
  });
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return {
    values: { tag: 'text', val: { offsets, data: decoder.decode(joined) } },
    validity: nulls ? validity : undefined,
  };
}

class Transformer {
  constructor(schema, targets) {
    this.schema = schema;
    this.targets = targets;
  }

  static open(config, input) {
    const settings = new Map(config);
    const wanted = (settings.get('columns') ?? '').split(',').map((c) => c.trim()).filter((c) => c);
    if (wanted.length === 0) throw 'setting `columns` must name at least one column';
    const mode = settings.get('mode') ?? 'mask';
    if (mode !== 'mask') throw `setting \`mode\`: this plugin only masks, not \`${mode}\``;
    const names = input.columns.map((c) => c.name);
    const targets = new Set();
    for (const name of wanted) {
      const index = names.indexOf(name);
      if (index < 0) throw `table ${input.name} has no column \`${name}\``;
      if (input.columns[index].dataType.tag !== 'text') throw `column \`${name}\` of table ${input.name} is not text`;
      targets.add(index);
    }
    return new Transformer(input, targets);
  }

  outputSchema() {
    return this.schema;
  }

  process(input) {
    const rows = input.len;
    const columns = this.schema.columns.map((_, index) => {
      if (!this.targets.has(index)) return { tag: 'unchanged', val: index };
      const masked = readTexts(input.columns[index], rows).map((t) => (t === null ? null : mask(t)));
      return { tag: 'values', val: textColumn(masked) };
    });
    const origin = new Uint32Array(rows);
    for (let i = 0; i < rows; i++) origin[i] = i;
    return { len: rows, columns, origin, rejects: [] };
  }
}

export const transform = { Transformer };
