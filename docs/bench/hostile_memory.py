#!/usr/bin/env python3
"""Peak memory and time of one hostile request against a fresh `ichnaea serve`.

For each case, starts the given binary on a fresh data directory (embedded
SQLite), waits for /__lbheartbeat__, reads VmHWM (peak RSS) from
/proc/<pid>/status, sends the case's single request, and reads VmHWM again:
the growth is the request's peak cost (the process is new, so nothing else
raised its peak). Also prints the status, the wall time of the request and
the server's CPU time for it (utime+stime from /proc/<pid>/stat).

Standard library only; loopback only.

    python3 docs/bench/hostile_memory.py --binary target/release/ichnaea \
        --case submit_empty_cells --repeat 3
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def body_submit_empty_cells():
    """The issue's body: 500,000 reports of one empty cell (≈ 10 MB)."""
    return "/v2/geosubmit", '{"items":[' + ",".join(['{"cellTowers":[{}]}'] * 500_000) + "]}"


def body_submit_tiny_cells():
    """Worst case that is still queued: /v1/submit reports of one `{"cid":N}` cell (≈ 10 MB)."""
    items = ",".join('{"cell":[{"cid":%d}]}' % (i % 10) for i in range(450_000))
    return "/v1/submit", '{"items":[' + items + "]}"


def body_submit_one_report():
    """One report with 250,000 distinct Wi-Fi entries (≈ 10 MB)."""
    wifi = ",".join('{"macAddress":"02%010x"}' % i for i in range(250_000))
    report = '{"position":{"latitude":51.5,"longitude":10.1},"wifiAccessPoints":[' + wifi + "]}"
    return "/v2/geosubmit", '{"items":[' + report + "]}"


def body_locate_empty_wifi():
    """The issue's body: 1,000,000 empty Wi-Fi entries (≈ 3 MB)."""
    return "/v1/geolocate?key=hostile-bench", '{"wifiAccessPoints":[' + ",".join(["{}"] * 1_000_000) + "]}"


def body_locate_100k_wifi():
    """100,000 distinct Wi-Fi MACs in one query (≈ 4 MB)."""
    wifi = ",".join('{"macAddress":"02%010x","signalStrength":-70}' % i for i in range(100_000))
    return "/v1/geolocate?key=hostile-bench", '{"considerIp":false,"wifiAccessPoints":[' + wifi + "]}"


CASES = {
    "submit_empty_cells": body_submit_empty_cells,
    "submit_tiny_cells": body_submit_tiny_cells,
    "submit_one_report": body_submit_one_report,
    "locate_empty_wifi": body_locate_empty_wifi,
    "locate_100k_wifi": body_locate_100k_wifi,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_case(binary, name, path, body):
    data = tempfile.mkdtemp(prefix="hostile-mem-")
    port = free_port()
    env = dict(os.environ)
    env.update({
        "ICHNAEA_DATA_DIR": data,
        "ICHNAEA_LISTEN": f"127.0.0.1:{port}",
        "ICHNAEA_METRICS_LISTEN": "off",
        "ICHNAEA_LOG_LEVEL": "warn",
        "ICHNAEA_CELL_EXPORT_URL": "off",
    })
    subprocess.run([binary, "apikey", "create", "hostile-bench"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Only the web role: the worker would start applying what was queued.
    proc = subprocess.Popen([binary, "serve", "--roles", "web"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/__lbheartbeat__")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        time.sleep(0.3)
        before = status_kb(proc.pid, "VmHWM")
        cpu0 = cpu_seconds(proc.pid)
        raw = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        start = time.monotonic()
        conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = resp.read()
        elapsed = time.monotonic() - start
        time.sleep(0.2)
        after = status_kb(proc.pid, "VmHWM")
        cpu = cpu_seconds(proc.pid) - cpu0
        return {
            "case": name,
            "status": resp.status,
            "body_mb": round(len(raw) / 1e6, 2),
            "peak_before_mb": round(before / 1024, 1),
            "peak_after_mb": round(after / 1024, 1),
            "growth_mb": round((after - before) / 1024, 1),
            "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 2),
            "answer": answer[:80].decode(errors="replace"),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for name in args.case or sorted(CASES):
        path, body = CASES[name]()
        for _ in range(args.repeat):
            print(json.dumps(run_case(args.binary, name, path, body)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
