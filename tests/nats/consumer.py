"""A consumer that is not DMP: reads every message of a stream DMP wrote
(nats-py, an ordered consumer) and checks the envelope and the value
encodings the README documents. Usage: consumer.py URL STREAM PREFIX"""

import asyncio
import base64
import json
import sys

import nats


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def read_all(url, stream, prefix):
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(f"{prefix}.>", stream=stream, ordered_consumer=True)
    messages = []
    while True:
        msg = await sub.next_msg(timeout=10)
        messages.append(msg)
        if msg.metadata.num_pending == 0:
            break
    await nc.close()
    return messages


def main(url, stream, prefix):
    messages = asyncio.run(read_all(url, stream, prefix))
    schemas = [m for m in messages if m.subject.startswith(f"{prefix}._schema.")]
    check(len(schemas) == 1, f"one schema message, not {len(schemas)}")
    schema = json.loads(schemas[0].data)
    version = schemas[0].headers["Dmp-Schema-Version"]
    check(schema["version"] == version, "the schema message names its version")
    table = schema["table"]
    check(table["name"] == "every_type" and table["primary_key"] == ["id"], table)
    types = {c["name"]: c["type"] for c in table["columns"]}
    check(types["d38"].startswith("decimal") and types["tstz"] == "timestamptz", types)

    rows = {}
    for m in messages:
        if m in schemas:
            continue
        check(m.subject == f"{prefix}.public.every_type", m.subject)
        h = m.headers
        check(h["Dmp-Op"] == "r" and h["Dmp-Table"] == "public.every_type", h)
        check(h["Dmp-Schema-Version"] == version and h["Nats-Msg-Id"], h)
        e = json.loads(m.data)
        check(set(e) == {"before", "after", "source", "op", "ts_ms"}, sorted(e))
        check(e["op"] == "r" and e["before"] is None and isinstance(e["ts_ms"], int), e["op"])
        s = e["source"]
        check(s["connector"] == "dmp" and s["name"] == "p", s)
        check(s["schema"] == "public" and s["table"] == "every_type", s)
        check(s["snapshot"] is True and isinstance(s["ts_ms"], int) and s["db"], s)
        rows[e["after"]["id"]] = e["after"]
    check(sorted(rows) == [1, 2, 3, 4, 6], f"rows {sorted(rows)} (5 is a dead letter)")

    one = rows[1]
    check(one["b"] is True and one["i2"] == 1 and one["i4"] == 2 and one["i8"] == 3, one)
    check(one["f4"] == 1.5 and one["f8"] == 2.25, "floats as numbers")
    check(one["d38"] == "123.4500000000" and one["dfree"] == "1.5", "decimals as strings")
    check(base64.b64decode(one["by"]) == bytes.fromhex("deadbeef00ff"), "bytes as base64")
    check(one["j"] == {"a": None, "bb": [1, 2.5, "x"]} and one["jb"] == {"k": "v", "n": 1}, "JSON as JSON")
    check(one["dt"] == "2024-02-29" and one["tm"] == "12:34:56.789012", "dates and times")
    check(one["ts"] == "2024-06-30T23:59:59.999999", "timestamps ISO 8601")
    check(one["tstz"] == "2024-03-09T21:00:00.123456Z", "timestamps with zone in UTC")
    check(one["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuids as text")
    check(one["arr"] == [1, 2, None, 4] and one["tags"] == ["a b", 'c"d'], "arrays as JSON")
    check(one["m"] == "happy" and one["vc"] == "héllo", "text")
    two = rows[2]
    check(two["i8"] == 9223372036854775807, "64-bit integers exact")
    check(two["d38"] == "9999999999999999999999999999.9999999999", "wide decimals exact")
    check(two["dfree"] == "123456789012345678901234567890.123456789012345678901234567890", two["dfree"])
    check(rows[3]["i8"] == -9223372036854775808 and rows[3]["by"] == "", "extremes")
    check(all(v is None for k, v in rows[4].items() if k != "id"), "nulls")
    check(rows[6]["f4"] == "Infinity" and rows[6]["f8"] == "NaN", "NaN and Infinity as strings")
    print(f"{len(rows)} rows checked")


if __name__ == "__main__":
    main(*sys.argv[1:])
