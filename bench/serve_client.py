#!/usr/bin/env python3
"""HTTP client of bench/serve.sh (standard library only).

  serve_client.py start BASE TOKEN NAME
      Follows NAME's event stream, POSTs …/start {"restart": true} and
      reads `status` events until the new run is done (or failed/stopped).
      Prints `SECONDS STATE RUN`: from just before the POST to the event.

  serve_client.py lag BASE TOKEN SECONDS INTERVAL NAME...
      Samples each NAME's …/status every INTERVAL seconds for SECONDS (one
      keep-alive connection) and reads /metrics before and after. Prints
      one JSON object: the sampled lag.ms (all pipelines pooled: n, p50,
      p99, max; and the worst per-pipeline p99), the p99 of the
      dmp_lag_seconds histogram over the period (bucket upper bound, all
      pipelines pooled), the changes applied (dmp_changes_total) and the
      status requests' own times (median, p99).
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


def lag(base, token, seconds, interval, names):
    conn = connection(base)
    before = get(conn, "/metrics", token).decode()
    samples = {n: [] for n in names}
    request_ms = []
    deadline = time.monotonic() + seconds
    tick = time.monotonic()
    missed = 0
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
            missed += 1
    after = get(conn, "/metrics", token).decode()
    pooled = [v for vs in samples.values() for v in vs]
    h0, h1 = histogram(before, "dmp_lag_seconds"), histogram(after, "dmp_lag_seconds")
    delta = sorted((le, h1[le] - h0.get(le, 0)) for le in h1)
    total = delta[-1][1] if delta else 0
    hist_p99 = None
    for le, count in delta:
        if total and count >= 0.99 * total:
            hist_p99 = le * 1000
            break
    changes = counter(after, "dmp_changes") - counter(before, "dmp_changes")
    print(json.dumps({
        "n": len(pooled),
        "p50_ms": percentile(pooled, 50),
        "p99_ms": percentile(pooled, 99),
        "max_ms": max(pooled) if pooled else None,
        "worst_pipeline_p99_ms": max((percentile(v, 99) for v in samples.values() if v), default=None),
        "hist_samples": total,
        "hist_p99_ms": hist_p99,
        "changes_per_s": changes / seconds,
        "status_median_ms": percentile(request_ms, 50),
        "status_p99_ms": percentile(request_ms, 99),
        "late_ticks": missed,
    }))


def main(argv):
    if len(argv) >= 4 and argv[0] == "start":
        start(argv[1], argv[2], argv[3])
    elif len(argv) >= 6 and argv[0] == "lag":
        lag(argv[1], argv[2], float(argv[3]), float(argv[4]), argv[5:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
