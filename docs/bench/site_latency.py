#!/usr/bin/env python3
"""Latency of the site's live coverage tiles and statistics pages.

Measures a running `ichnaea serve --roles web` on loopback, one request at a
time over one keep-alive connection (standard library only):

* tiles: picks up to --tiles distinct tiles per zoom that hold data-map rows
  (sampled from the SQLite database), requests each once (pass 1: drawn, or
  read from the disk cache of an earlier process), then once more (pass 2:
  memory); prints p50/p99 latency, tiles/s, the server's CPU time per tile
  (from /proc/<pid>/stat) and how many renders the server counted
  (`tiles_render` in /metrics);
* pages: /stats and /stats/regions, the first request and --page-requests
  more.

Only loopback URLs are accepted.
"""

import argparse
import http.client
import os
import random
import sqlite3
import struct
import sys
import time
import urllib.parse
from math import floor, log, pi, tan, cos, radians

TABLES = ["datamap_ne", "datamap_nw", "datamap_se", "datamap_sw"]


def tile_of(lat, lon, z):
    n = 2 ** z
    x = (lon + 180.0) / 360.0 * n
    lat = radians(max(-85.0511, min(85.0511, lat)))
    y = (1.0 - log(tan(lat) + 1.0 / cos(lat)) / pi) / 2.0 * n
    return int(floor(x)), int(floor(y))


def sample_tiles(db, zoom, count, seed):
    rng = random.Random(seed * 100 + zoom)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    grids = []
    for table in TABLES:
        grids += [row[0] for row in con.execute(f"SELECT grid FROM {table}")]
    con.close()
    rng.shuffle(grids)
    tiles = []
    seen = set()
    for grid in grids:
        lat, lon = struct.unpack(">II", grid)
        t = tile_of((lat - 90000) / 1000.0, (lon - 180000) / 1000.0, zoom)
        if t not in seen:
            seen.add(t)
            tiles.append(t)
            if len(tiles) == count:
                break
    return tiles


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Client:
    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("only loopback URLs")
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def get(self, path):
        start = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            sys.exit(f"{path}: {response.status}")
        return elapsed, body


def renders(client):
    _, body = client.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith("tiles_render "):
            return int(float(line.split()[1]))
    return 0


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def row(label, latencies, wall, cpu, drawn):
    ms = [v * 1000 for v in latencies]
    return (
        f"| {label} | {len(ms)} | {pct(ms, 50):.1f} | {pct(ms, 99):.1f} | {max(ms):.1f} | "
        f"{len(ms) / wall:.1f} | {cpu * 1000 / len(ms):.1f} | {drawn} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--db", required=True, help="the SQLite database (tiles are sampled from it)")
    ap.add_argument("--pid", type=int, required=True, help="the server's process id")
    ap.add_argument("--zooms", default="6,9,11")
    ap.add_argument("--tiles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", default="cold", help="label of pass 1")
    ap.add_argument("--page-requests", type=int, default=200)
    args = ap.parse_args()
    client = Client(args.url)
    print("| zoom, pass | tiles | p50 ms | p99 ms | max ms | tiles/s | server CPU ms/tile | renders |")
    print("|---|---|---|---|---|---|---|---|")
    for zoom in [int(z) for z in args.zooms.split(",")]:
        tiles = sample_tiles(args.db, zoom, args.tiles, args.seed)
        for label in (args.first, "memory"):
            before_cpu, before_renders = cpu_seconds(args.pid), renders(client)
            start = time.perf_counter()
            latencies = [client.get(f"/tiles/{zoom}/{x}/{y}.png")[0] for x, y in tiles]
            wall = time.perf_counter() - start
            cpu = cpu_seconds(args.pid) - before_cpu
            drawn = renders(client) - before_renders
            print(row(f"{zoom}, {label}", latencies, wall, cpu, drawn))
        sys.stdout.flush()
    print()
    print("| page | first request ms | then p50 ms | p99 ms | requests/s | server CPU ms/request |")
    print("|---|---|---|---|---|---|")
    for path in ("/stats", "/stats/regions"):
        first, _ = client.get(path)
        before = cpu_seconds(args.pid)
        start = time.perf_counter()
        latencies = [client.get(path)[0] for _ in range(args.page_requests)]
        wall = time.perf_counter() - start
        cpu = cpu_seconds(args.pid) - before
        ms = [v * 1000 for v in latencies]
        print(
            f"| {path} | {first * 1000:.1f} | {pct(ms, 50):.2f} | {pct(ms, 99):.2f} | "
            f"{len(ms) / wall:.0f} | {cpu * 1000 / len(ms):.2f} |"
        )


if __name__ == "__main__":
    main()
