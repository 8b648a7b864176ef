#!/usr/bin/env python3
"""HTTP client of bench/serve.sh (standard library only).

  serve_client.py start BASE TOKEN NAME
      Follows NAME's event stream, POSTs …/start {"restart": true} and
      reads `status` events until the new run is done (or failed/stopped).
      Prints `SECONDS STATE RUN`: from just before the POST to the event.

  serve_client.py lag BASE TOKEN SECONDS INTERVAL OUT NAME...
      Samples each NAME's …/status every INTERVAL seconds for SECONDS (one
      keep-alive connection; fails unless each is streaming) and reads
      /metrics before and after; writes what it saw to OUT (JSON).

  serve_client.py summary OUT...
      Of the periods sampled into the OUT files, one JSON object: the
      sampled lag.ms pooled over pipelines and periods (n, p50, p99, max;
      the worst per-pipeline p99), the p99 of the dmp_lag_seconds
      histogram's increase (a bucket's upper bound, all pipelines), the
      changes applied per second (dmp_changes_total) and the status
      requests' own times (median, p99).

  serve_client.py windows LOG START END [START END…]
      The engine's own per-transaction lag of the streams, from the 10 s
      `stream … lag_p99_ms=…` reports in the service log LOG that lie
      within one of the periods START..END (unix seconds): the number of
      windows, the median of their p50, the median and the largest of
      their p99, the largest lag.
"""

import http.client
import json
import re
import sys
import time
import urllib.parse


def connection(base, timeout=60):
    url = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)


def get(conn, path, token):
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: {resp.status} {body[:300]!r}")
    return body


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))
    return s[int(rank) - 1]


def events(resp):
    """(event, data) pairs of a text/event-stream response."""
    kind, data = None, []
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = None, []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def start(base, token, name):
    path = f"/api/v1/pipelines/{urllib.parse.quote(name)}"
    watch = connection(base, timeout=120)
    watch.request("GET", path + "/events", headers={"Authorization": f"Bearer {token}"})
    resp = watch.getresponse()
    if resp.status != 200:
        raise SystemExit(f"GET {path}/events: {resp.status} {resp.read()[:300]!r}")
    stream = events(resp)
    # The first event is the status as it is now (the previous run's).
    before = None
    for kind, data in stream:
        if kind == "status":
            before = json.loads(data).get("run")
            break
    control = connection(base)
    t0 = time.monotonic()
    control.request(
        "POST",
        path + "/start",
        body=b'{"restart": true}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    answer = control.getresponse()
    body = answer.read()
    if answer.status != 202:
        raise SystemExit(f"POST {path}/start: {answer.status} {body[:300]!r}")
    for kind, data in stream:
        if kind != "status":
            continue
        status = json.loads(data)
        run = status.get("run")
        if run is not None and run != before and status["state"] in ("done", "failed", "stopped"):
            print(f"{time.monotonic() - t0:.3f} {status['state']} {run}")
            return
    raise SystemExit(f"{path}/events ended before the run did")


def histogram(text, name):
    """Bucket counts (le → count, cumulative) summed over every series of
    histogram `name` in Prometheus text."""
    buckets = {}
    for m in re.finditer(rf'^{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)$', text, re.M):
        le = float(m.group(1))
        buckets[le] = buckets.get(le, 0) + float(m.group(2))
    return buckets


def counter(text, name):
    return sum(float(v) for v in re.findall(rf"^{name}(?:_total)?\{{[^}}]*\}} (\S+)$", text, re.M))


def lag(base, token, seconds, interval, out, names):
    conn = connection(base)
    before = get(conn, "/metrics", token).decode()
    samples = {n: [] for n in names}
    request_ms = []
    began = time.monotonic()
    deadline = began + seconds
    tick = began
    late = 0
    while tick < deadline:
        for n in names:
            t = time.monotonic()
            status = json.loads(get(conn, f"/api/v1/pipelines/{urllib.parse.quote(n)}/status", token))
            request_ms.append((time.monotonic() - t) * 1000)
            if status.get("state") != "streaming":
                raise SystemExit(f"pipeline {n} is {status.get('state')}: {status.get('error')}")
            ms = (status.get("lag") or {}).get("ms")
            if ms is not None:
                samples[n].append(ms)
        tick += interval
        pause = tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            late += 1
    after = get(conn, "/metrics", token).decode()
    with open(out, "w") as f:
        json.dump({
            "samples": samples,
            "request_ms": request_ms,
            "h0": histogram(before, "dmp_lag_seconds"),
            "h1": histogram(after, "dmp_lag_seconds"),
            "changes": counter(after, "dmp_changes") - counter(before, "dmp_changes"),
            "seconds": time.monotonic() - began,
            "late": late,
        }, f)


def summary(files):
    samples, request_ms, delta = {}, [], {}
    changes = seconds = late = 0
    for file in files:
        with open(file) as f:
            part = json.load(f)
        for n, v in part["samples"].items():
            samples.setdefault(n, []).extend(v)
        request_ms += part["request_ms"]
        for le, count in part["h1"].items():
            delta[float(le)] = delta.get(float(le), 0) + count - part["h0"].get(le, 0)
        changes += part["changes"]
        seconds += part["seconds"]
        late += part["late"]
    pooled = [v for vs in samples.values() for v in vs]
    buckets = sorted(delta.items())
    total = buckets[-1][1] if buckets else 0
    hist_p99 = next((le * 1000 for le, count in buckets if total and count >= 0.99 * total), None)
    print(json.dumps({
        "n": len(pooled),
        "p50_ms": percentile(pooled, 50),
        "p99_ms": percentile(pooled, 99),
        "max_ms": max(pooled) if pooled else None,
        "worst_pipeline_p99_ms": max((percentile(v, 99) for v in samples.values() if v), default=None),
        "hist_samples": total,
        "hist_p99_ms": hist_p99,
        "changes_per_s": changes / seconds if seconds else None,
        "status_median_ms": percentile(request_ms, 50),
        "status_p99_ms": percentile(request_ms, 99),
        "late_ticks": late,
    }))


def windows(log, periods):
    """The engine's own 10 s stream reports (`stream … lag_p99_ms=…`, one
    per pipeline and window, over every transaction applied) in the
    service log `log` that were logged from start + 10 s to end (unix
    seconds) of one of `periods`: windows that lie within a period."""
    from datetime import datetime
    p50, p99, peak = [], [], []
    pattern = re.compile(r"^(\S+Z) .* stream changes_per_sec=\S+ transactions=\d+ "
                         r"lag_p50_ms=(\S+) lag_p99_ms=(\S+) lag_max_ms=(\S+)")
    with open(log, errors="replace") as lines:
        for line in lines:
            m = pattern.match(line)
            if not m:
                continue
            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            if any(start + 10 <= at <= end for start, end in periods):
                p50.append(float(m.group(2)))
                p99.append(float(m.group(3)))
                peak.append(float(m.group(4)))
    print(json.dumps({
        "windows": len(p99),
        "p50_median_ms": percentile(p50, 50),
        "p99_median_ms": percentile(p99, 50),
        "p99_max_ms": max(p99) if p99 else None,
        "max_ms": max(peak) if peak else None,
    }))


def main(argv):
    if len(argv) == 4 and argv[0] == "start":
        start(argv[1], argv[2], argv[3])
    elif len(argv) >= 7 and argv[0] == "lag":
        lag(argv[1], argv[2], float(argv[3]), float(argv[4]), argv[5], argv[6:])
    elif len(argv) >= 2 and argv[0] == "summary":
        summary(argv[1:])
    elif len(argv) >= 4 and len(argv) % 2 == 0 and argv[0] == "windows":
        bounds = [float(a) for a in argv[2:]]
        windows(argv[1], list(zip(bounds[::2], bounds[1::2])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
