#!/usr/bin/env python3
"""Aggregate bench/peers.sh raw wrk results into markdown tables.

usage: peers_report.py raw.tsv meta.tsv target1 target2 ...

Per (target, conns): median over rounds of rps, p50, p99, proxy CPU per request;
min-max spread of rps; ratios vs nginx-w1 and vs direct are computed *within
each round* (same conns) and then the median of those per-round ratios is shown.
Then the like-for-like pairs of issue 6 (gw on one thread against nginx's one
worker, gw's default against nginx-auto and HAProxy with 2 threads, the policy
route against the plain route): per-round ratios of rps, p50 and p99, medians.
"""
import csv
import os
import statistics as st
import sys
from collections import defaultdict

REF_NGINX = "nginx-w1"
REF_DIRECT = "direct"
# (target, reference): compared like with like.
PAIRS = [
    ("gw-t1", "nginx-w1"),
    ("gw-t1", "haproxy-t1"),
    ("gw-auto", "nginx-auto"),
    ("gw-auto", "haproxy-t2"),
    ("gw-t1-jwt", "gw-t1"),
    # The floor: bytes copied without HTTP, the same socket calls per message.
    ("tcp-floor", "nginx-w1"),
    ("gw-t1", "tcp-floor"),
]


def med(xs):
    return st.median(xs) if xs else None


def fmt_us(us):
    if us is None:
        return "-"
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def fmt_pct(rs, key):
    xs = [x[key] for x in rs if key in x]
    return f"{med(xs):.0f}/{max(xs):.0f}" if xs else "-"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def main():
    raw_path, meta_path, *order = sys.argv[1:]
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    rows = list(csv.DictReader(open(raw_path), delimiter="\t"))
    meta = {m["target"]: m for m in csv.DictReader(open(meta_path), delimiter="\t")}

    runs = defaultdict(list)         # (target, conns) -> list of dicts
    by_round = defaultdict(dict)     # (round, conns) -> target -> rps
    lat_round = defaultdict(dict)    # (round, conns) -> target -> (p50, p99)
    for r in rows:
        req = int(r["requests"])
        dur = int(r["duration_us"]) / 1e6
        rps = req / dur if dur > 0 else 0.0
        d = dict(rps=rps, p50=int(r["p50_us"]), p99=int(r["p99_us"]), err=int(r["errors"]),
                 cpu_us_req=(int(r["cpu_ticks"]) * tick_us / req) if req else None)
        # What the rest of the machine (the upstream nginx and wrk) spent per request: with two
        # cores shared by all three, throughput follows the sum, not the proxy's part alone.
        rest = int(r["wrk_ticks"]) + (int(r["upstream_ticks"]) if r["target"] != REF_DIRECT else 0)
        d["rest_us_req"] = rest * tick_us / req if req else None
        if "sys_busy_ticks" in r:  # noise accounting (CPU not used by target, upstream or wrk)
            ours = int(r["cpu_ticks"]) + int(r["wrk_ticks"])
            if r["target"] != REF_DIRECT:
                ours += int(r["upstream_ticks"])
            win = int(r.get("window_us") or 0) / 1e6 or dur  # wall time of the measured window
            cap = ncpu * win * 1e6 / tick_us  # ticks available during the window
            d["other_pct"] = max(0.0, (int(r["sys_busy_ticks"]) - ours) / cap * 100)
            d["steal_pct"] = int(r["steal_ticks"]) / cap * 100
            d["busy_pct"] = int(r["sys_busy_ticks"]) / cap * 100
        runs[(r["target"], int(r["conns"]))].append(d)
        by_round[(r["round"], int(r["conns"]))][r["target"]] = rps
        lat_round[(r["round"], int(r["conns"]))][r["target"]] = (d["p50"], d["p99"])

    def ratio(t, c, ref):
        xs = [v[t] / v[ref] for (rd, cc), v in by_round.items()
              if cc == c and t in v and ref in v and v[ref] > 0]
        return med(xs)

    conns = sorted({c for (_, c) in runs})
    print("| target | conns | rps median | rps min-max (spread) | p50 | p99 | x nginx-w1 | x direct "
          "| CPU us/req (target procs) | upstream+wrk us/req | idle RSS | peak RSS (VmHWM) | errors | other CPU % med/max |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        for t in order:
            rs = runs.get((t, c))
            if not rs:
                continue
            rps = [x["rps"] for x in rs]
            lo, hi, m = min(rps), max(rps), med(rps)
            spread = (hi - lo) / m * 100 if m else 0
            cpu = med([x["cpu_us_req"] for x in rs if x["cpu_us_req"] is not None])
            rest = med([x["rest_us_req"] for x in rs if x["rest_us_req"] is not None])
            mt = meta.get(t, {})
            idle = int(mt.get("idle_rss_kb", 0)) / 1024
            peak = int(mt.get("peak_hwm_kb", 0)) / 1024
            nproc = mt.get("nprocs", "?")
            print(f"| {t} | {c} | {m:,.0f} | {lo:,.0f}-{hi:,.0f} ({spread:.0f}%) | "
                  f"{fmt_us(med([x['p50'] for x in rs]))} | {fmt_us(med([x['p99'] for x in rs]))} | "
                  f"{fmt_ratio(ratio(t, c, REF_NGINX))} | {fmt_ratio(ratio(t, c, REF_DIRECT))} | "
                  f"{'-' if cpu is None else f'{cpu:.1f}'} | {'-' if rest is None else f'{rest:.1f}'} | {idle:.1f} MiB | {peak:.1f} MiB ({nproc}p) | "
                  f"{sum(x['err'] for x in rs)} | {fmt_pct(rs, 'other_pct')} |")
    pairs = [(t, ref) for (t, ref) in PAIRS if t in order and ref in order]
    if pairs:
        def lat_ratio(t, c, ref, k):
            xs = [v[t][k] / v[ref][k] for (rd, cc), v in lat_round.items()
                  if cc == c and t in v and ref in v and v[ref][k] > 0]
            return med(xs)
        print()
        print("Like with like (medians of per-round ratios; rps: higher is better, latency: lower is better):")
        print()
        print("| target / reference | conns | rps ratio | p50 ratio | p99 ratio | CPU us/req target / reference |")
        print("|---|---:|---:|---:|---:|---:|")
        for t, ref in pairs:
            for c in conns:
                if (t, c) not in runs or (ref, c) not in runs:
                    continue
                cpu = [med([x["cpu_us_req"] for x in runs[(k, c)] if x["cpu_us_req"] is not None])
                       for k in (t, ref)]
                cpu_s = "-" if None in cpu else f"{cpu[0]:.1f} / {cpu[1]:.1f}"
                print(f"| {t} / {ref} | {c} | {fmt_ratio(ratio(t, c, ref))} | "
                      f"{fmt_ratio(lat_ratio(t, c, ref, 0))} | {fmt_ratio(lat_ratio(t, c, ref, 1))} | {cpu_s} |")
    allruns = [x for rs in runs.values() for x in rs]
    print()
    if allruns and "other_pct" in allruns[0]:
        print(f"Noise: CPU busy during runs median {med([x['busy_pct'] for x in allruns]):.0f}% of {ncpu} CPUs; "
              f"'other CPU' (busy minus target, upstream and wrk; includes unattributed softirq) median "
              f"{med([x['other_pct'] for x in allruns]):.1f}%, max {max(x['other_pct'] for x in allruns):.1f}%; "
              f"steal median {med([x['steal_pct'] for x in allruns]):.1f}%, max {max(x['steal_pct'] for x in allruns):.1f}%.")
        print()
    print(f"n = {len(rows)} runs; medians over rounds; ratios = median of per-round ratios. "
          "RSS summed over the target's process tree (np = processes); for `direct` the RSS/CPU "
          "columns are the upstream nginx (all 3 ports, whole session). CPU us/req = utime+stime of "
          "the target's processes during the run / requests (10 ms tick resolution); upstream+wrk us/req "
          "is the same for the upstream nginx and wrk (for `direct`, wrk alone).")


if __name__ == "__main__":
    main()
