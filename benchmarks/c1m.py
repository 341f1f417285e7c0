#!/usr/bin/env python3
"""One million streams in one jugglite process, against 100K in the same run, and a storm
of 100K connects with no ramp (`scripts/bench c1m`).

Each run starts a redis-server and jugglite (`--max-conns` 10% above the streams), then
benchmarks/loadgen opens the streams over 32 source addresses and enough worker processes
(each under the open-file limit), publishes one broadcast and waits for every stream to
get it. Every second it samples jugglite's RSS, the kernel's slab and jugglite's open
streams; it writes <out>.md (the figures), <out>.dat and <out>.png (gnuplot: RSS, slab and
streams over time).

With --netns-ehash N it runs all of that in a new network namespace whose TCP established
hash has N entries (net.ipv4.tcp_child_ehash_entries, Linux 6.1+, as root), with
scripts/tune-linux.sh applied there: what a larger table (thash_entries= at boot) does at
1M streams, where every segment looks up one of 2M loopback sockets.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos"))
from harness import ROOT, WORK, Jugglite, Redis, slab_bytes  # noqa: E402

LOADGEN = os.path.join(ROOT, "build/release/benchmarks/loadgen")
MiB = 1 << 20
PER_WORKER = 18_000  # loadgen's workers stay under the 20000 open-file limit


def run(label, conns, ramp, samples):
    """One run: jugglite with `conns` streams opened at `ramp` per second. Returns loadgen's
    JSON plus jugglite's RSS before the first client."""
    redis = Redis()
    j = Jugglite(redis, "--max-conns", math.ceil(conns * 1.1), "--keepalive", 60)
    rss_start = j.rss()
    out = os.path.join(WORK, f"c1m-{label}.json")
    workers = max(2, math.ceil(conns / PER_WORKER))
    argv = [LOADGEN, "--port", str(j.port), "--pub-port", str(redis.port), "--pids", str(j.proc.pid),
            "--conns", str(conns), "--workers", str(workers), "--sources", "32", "--ramp", str(ramp),
            "--rates", "1", "--messages", "1", "--hold", "3", "--settle", "30", "--label", label,
            "--json", out]
    print(f"--- {label}: {conns} streams, {workers} loadgen workers, ramp {ramp:.0f}/s", flush=True)
    done = threading.Event()
    start = time.monotonic()

    def sample():
        while not done.is_set():
            try:
                # A scrape that times out under load leaves the sample out (it is not 0 streams).
                opened = j.metrics().get("jugglite_connections_open")
                if opened is not None:
                    samples.append((label, time.monotonic() - start, j.rss(), slab_bytes(), opened))
            except (OSError, ValueError):
                pass
            done.wait(1.0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    refusals = {}
    try:
        subprocess.run(argv, check=True)
        # What jugglite itself turned away, by reason.
        m = j.metrics()
        refusals = {k: int(v) for k, v in m.items()
                    if v and (k.startswith("jugglite_connections_refused_total{") or
                              k in ("jugglite_connections_rejected_total", "jugglite_request_timeouts_total"))}
    finally:
        done.set()
        sampler.join()
        j.stop()
        redis.stop()
    with open(out) as f:
        result = json.load(f)
    result["rss_start"] = rss_start
    result["refusals"] = refusals
    # Let the kernel free the sockets before the next run measures its slab.
    time.sleep(5)
    return result


def in_netns(entries):
    """Runs this script again inside a new network namespace with its own TCP established
    hash of `entries` (a power of two). Returns its exit status."""
    name = f"jugglite-c1m-{os.getpid()}"
    key = "net.ipv4.tcp_child_ehash_entries"
    old = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["sysctl", "-qw", f"{key}={entries}"], check=True)
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)  # its table is sized here
    finally:
        subprocess.run(["sysctl", "-qw", f"{key}={old}"], check=True)
    try:
        ns = ["ip", "netns", "exec", name]
        subprocess.run(ns + ["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(ns + ["bash", os.path.join(ROOT, "scripts/tune-linux.sh")], check=True,
                       stdout=subprocess.DEVNULL,
                       env={**os.environ, "JUGGLITE_TUNE_STATE": os.path.join(WORK, "netns.sysctl")})
        return subprocess.run(ns + [sys.executable] + sys.argv, env={**os.environ, "JUGGLITE_C1M_NETNS": name}).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name])


def row(r):
    step = r["steps"][0] if r["steps"] else {}
    failed = ", ".join(f"{k} {v}" for k, v in r.get("failed_by", {}).items() if v) or "none"
    if r.get("failed_status"):  # the answers that were not 200, by status code
        failed += " (" + ", ".join(f"{code}: {n}" for code, n in r["failed_status"].items()) + ")"
    return (f"| {r['label']} | {r['connected']:,} of {r['conns']:,} | {failed} | {r['connect_seconds']:.1f} s "
            f"({r['connect_rate']:,.0f}/s) | {r['rss_start'] / MiB:.1f} MB | {r['rss_per_conn']:.0f} B | "
            f"{r['slab_per_conn'] / 1024:.1f} KB | {r['delivered']:,} / {r['expected']:,}, lost {r['lost']} | "
            f"{r['p50_ms'] / 1e3:.2f} / {r['p99_ms'] / 1e3:.2f} / {r['max_ms'] / 1e3:.2f} s | "
            f"{step.get('cpu_us_per_frame', 0):.2f} µs |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=1_000_000)
    ap.add_argument("--compare", type=int, default=100_000, help="the smaller run, same ramp")
    ap.add_argument("--ramp", type=float, default=20_000, help="connects per second of both runs")
    ap.add_argument("--storm", type=int, default=100_000, help="connects at once, no ramp (0: none)")
    ap.add_argument("--out", default="c1m", help="prefix of the .md, .dat and .png written")
    ap.add_argument("--netns-ehash", type=int, default=0,
                    help="run in a new network namespace with a TCP established hash of this many "
                         "entries (a power of two; root, Linux 6.1+)")
    args = ap.parse_args()
    if args.netns_ehash and not os.environ.get("JUGGLITE_C1M_NETNS"):
        sys.exit(in_netns(args.netns_ehash))
    with open("/proc/sys/net/ipv4/tcp_ehash_entries") as f:
        ehash = int(f.read())

    samples = []
    results = [run(f"{args.compare // 1000}K", args.compare, args.ramp, samples),
               run(f"{args.conns // 1000}K", args.conns, args.ramp, samples)]
    storm = run(f"storm-{args.storm // 1000}K", args.storm, 1e9, []) if args.storm else None

    dat = args.out + ".dat"
    with open(dat, "w") as f:
        for i, r in enumerate(results):
            f.write(f"# {r['label']}: t_s rss_mib slab_mib streams_open\n")
            for label, t, rss, slab, opened in samples:
                if label == r["label"]:
                    f.write(f"{t:.1f} {rss / MiB:.1f} {slab / MiB:.1f} {opened:.0f}\n")
            f.write("\n\n")
    png = args.out + ".png"
    lines = lambda col: ", ".join(  # noqa: E731
        f"'{dat}' index {i} using 1:{col} with lines title '{r['label']}'" for i, r in enumerate(results))
    plot = f"""set terminal png size 1200,1000
set output '{png}'
set multiplot layout 3,1 title 'jugglite: {results[1]['connected']:,} and {results[0]['connected']:,} streams, one process, 2 cores'
set xlabel 't (s) from the first connect'
set key left top
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set title 'jugglite RSS (MiB)'; plot {lines(2)}
set title 'kernel slab (MiB)'; plot {lines(3)}
set title 'streams open'; plot {lines(4)}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=plot, text=True, check=True)

    small, big = results
    md = [f"# One million streams in one process",
          "",
          f"`python3 benchmarks/c1m.py --conns {args.conns} --compare {args.compare} --ramp {args.ramp:.0f} "
          f"--storm {args.storm}" + (f" --netns-ehash {args.netns_ehash}`" if args.netns_ehash else
                                     "` (through `scripts/bench c1m`)") + f", {time.strftime('%Y-%m-%d')}, on this 2-core VM "
          "with the load generator on the same cores. jugglite runs with its default 2 shards and "
          "`--max-conns` 10% above the streams; loadgen spreads the streams over 32 source addresses "
          "and worker processes of 18,000 each, publishes one message once all are open, and waits "
          "for every stream to get it.",
          "",
          "| run | streams open | failed (why) | all open after | RSS before the first client | RSS added per stream | kernel slab per stream | broadcast received | broadcast p50 / p99 / max | CPU per frame |",
          "|---|---|---|---|---|---|---|---|---|---|",
          row(small), row(big)]
    if storm:
        md.append(row(storm))
    md += ["",
           f"- RSS added per stream at {big['label']} against {small['label']}: "
           f"{big['rss_per_conn']:.0f} B against {small['rss_per_conn']:.0f} B.",
           f"- The broadcast's p99 at {big['label']} against {small['label']}: "
           f"{big['p99_ms'] / max(small['p99_ms'], 1e-9):.1f}x for {big['connected'] / max(small['connected'], 1):.1f}x "
           "the streams.",
           "- Kernel slab per stream counts both ends of each loopback connection (the load "
           "generator's socket and jugglite's).",
           f"- Plot: `{os.path.basename(png)}` (RSS, slab and open streams over time for both runs).",
           f"- The TCP established hash had {ehash:,} entries (`net.ipv4.tcp_ehash_entries`"
           + (f", in a network namespace of its own: `--netns-ehash {args.netns_ehash}`" if args.netns_ehash else "")
           + f"): {2 * big['connected'] / ehash:.1f} loopback sockets per bucket at {big['label']}.",
           ""]
    for r in results + ([storm] if storm else []):
        if r["refusals"]:
            md.insert(-1, f"- jugglite's own refusals in the {r['label']} run: " +
                      ", ".join(f"`{k}` {v}" for k, v in sorted(r["refusals"].items())) + ".")
    if storm:
        md.insert(-1, f"- The storm: {storm['conns']:,} connects at once, no ramp: {storm['connected']:,} open "
                      f"after {storm['connect_seconds']:.1f} s ({storm['connect_rate']:,.0f}/s), "
                      f"{storm['failed']} failed.")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    ok = all(r["failed"] == 0 and r["lost"] == 0 for r in results + ([storm] if storm else []))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
