#!/usr/bin/env python3
"""Turns criterion's results under target/criterion into the markdown tables of
docs/benchmarks.md: throughput (GiB/s of vector data read) per kernel, dimension and
implementation, plus the ratios the issue asks about.

    python3 benches/report.py [target/criterion]
"""
import json
import os
import sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
rows = defaultdict(dict)  # (kernel, dim) -> {impl: GiB/s}
for dirpath, _, files in os.walk(root):
    if "benchmark.json" not in files or not dirpath.endswith(os.sep + "new"):
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        bench = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    group = bench["group_id"]
    if "/" not in group:
        continue
    kernel, dim = group.rsplit("/", 1)
    impl = bench.get("function_id") or ""
    if bench.get("value_str"):
        impl = f"{impl} {bench['value_str']}".strip()
    tp = (bench.get("throughput") or {}).get("Bytes")
    if tp is None:
        continue
    seconds = est["median"]["point_estimate"] / 1e9
    rows[(kernel, int(dim))][impl] = tp / seconds / 2**30

kernels = sorted({k for k, _ in rows})
for kernel in kernels:
    dims = sorted(d for k, d in rows if k == kernel)
    impls = sorted({i for (k, _), v in rows.items() if k == kernel for i in v})
    print(f"\n### {kernel} (GiB/s of stored vector data)\n")
    bests = [i for i in impls if i.startswith("ours-avx") or i.startswith("ours-neon")]

    def peer_of(best, peer):
        """The peer implementation measured on the same variant (suffix) as `best`."""
        suffix = best[len(best.split()[0]):]
        match = [i for i in impls if i.split()[0].startswith(peer) and i.endswith(suffix)]
        return match[0] if match else None

    pairs = [(b, p) for b in bests for p in ["simsimd", "ours-scalar"] if peer_of(b, p)]
    header = ["dim"] + impls + [f"{b} / {peer_of(b, p)}" for b, p in pairs]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for d in dims:
        r = rows[(kernel, d)]
        cells = [str(d)] + [f"{r[i]:.1f}" if i in r else "" for i in impls]
        for b, p in pairs:
            pv = r.get(peer_of(b, p))
            cells.append(f"{r[b] / pv:.2f}x" if b in r and pv else "")
        print("| " + " | ".join(cells) + " |")
