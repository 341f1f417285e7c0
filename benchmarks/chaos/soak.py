#!/usr/bin/env python3
"""jugglite over time: 20K streams, each on a shared channel and a private one; 200
connects and disconnects a second; 10 msg/s on the shared channel and 10 msg/s spread
over the private ones. Every 10 s it samples jugglite's RSS and open descriptors, the
kernel's slab, jugglite_connections_open, Redis' channel subscriptions and the delivery
p99 of the interval (jugglite's delivery-delay histogram), writes them to a data file and
plots them with gnuplot.

It fails when anything grows past the warm-up (the first third of the run, at least 60 s):
the median of the last three samples against the median of the first three after the
warm-up, within a bound per figure; or when a message is lost."""

import argparse
import os
import random
import subprocess
import sys
import time

from harness import Jugglite, Publisher, Redis, Watcher, slab_bytes, wait_for

MiB = 1 << 20
SHARED, PRIVATE = 1, 2  # loadgen tags


def delay_p99(buckets_now, buckets_before):
    """p99 (s) of the observations between two scrapes of jugglite_delivery_delay_seconds,
    interpolated linearly inside its bucket as Prometheus' histogram_quantile does."""
    diffs = sorted((le, buckets_now[le] - buckets_before.get(le, 0)) for le in buckets_now)
    total = diffs[-1][1] if diffs else 0
    if total <= 0:
        return 0.0
    want, lower, below = 0.99 * total, 0.0, 0
    for le, n in diffs:
        if n >= want:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (want - below) / max(1, n - below)
        lower, below = le, n
    return lower


def buckets(metrics):
    out = {}
    for k, v in metrics.items():
        if k.startswith("jugglite_delivery_delay_seconds_bucket{le="):
            le = k.split('"')[1]
            out[float("inf") if le == "+Inf" else float(le)] = v
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--streams", type=int, default=20_000)
    ap.add_argument("--churn", type=float, default=200)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--out", default="soak", help="prefix of the .dat, .png and .md written")
    args = ap.parse_args()

    redis = Redis()
    j = Jugglite(redis)
    seconds = args.minutes * 60
    w = Watcher(j.port, args.streams, seconds + 120, path="/stream?channel=shared,p{i}",
                sources=16, ramp=10_000, extra=["--churn", args.churn])
    connected = w.wait_connected(120)
    print(f"soak: {connected} streams, {args.churn:.0f} connects+disconnects/s, "
          f"{args.minutes:g} minutes, sampled every {args.interval:g} s", flush=True)
    shared = Publisher(redis, channel="shared", rate=10)
    shared.tag = SHARED
    private = Publisher(redis, channel=lambda: f"p{random.randrange(args.streams)}", rate=10)
    private.tag = PRIVATE

    rows = []
    start = time.monotonic()
    before = buckets(j.metrics())
    while time.monotonic() - start < seconds:
        time.sleep(args.interval - (time.monotonic() - start) % args.interval)
        m = j.metrics()
        now = buckets(m)
        subs = int(redis.info("pubsub_channels") or -1)
        row = {"t": time.monotonic() - start, "rss": j.rss(), "fds": j.fds(), "slab": slab_bytes(),
               "open": m.get("jugglite_connections_open", -1), "subs": subs,
               "p99": delay_p99(now, before), "churned": w.last.get("churned", 0)}
        before = now
        rows.append(row)
        print(f"  t={row['t']:5.0f}s rss={row['rss'] / MiB:6.1f}MiB fds={row['fds']} "
              f"slab={row['slab'] / MiB:7.1f}MiB open={row['open']:.0f} subs={subs} "
              f"p99={row['p99'] * 1e3:.1f}ms churned={row['churned']}", flush=True)

    shared.tag = private.tag = 0
    shared.stop()
    private.stop()
    wait_for(lambda: shared.expected(SHARED) * connected - w.tag(SHARED)["frames"] <= 0 and
             private.expected(PRIVATE) - w.tag(PRIVATE)["frames"] <= 0, 20, 0.5)
    lost_shared = max(0, shared.expected(SHARED) * connected - w.tag(SHARED)["frames"])
    lost_private = max(0, private.expected(PRIVATE) - w.tag(PRIVATE)["frames"])
    closed = w.last.get("closed", 0)
    dup = w.last.get("dup", 0)
    w.end()

    dat = args.out + ".dat"
    with open(dat, "w") as f:
        f.write("# t_s rss_mib fds slab_mib connections_open redis_channels p99_ms\n")
        for r in rows:
            f.write(f"{r['t']:.0f} {r['rss'] / MiB:.2f} {r['fds']} {r['slab'] / MiB:.1f} {r['open']:.0f} "
                    f"{r['subs']} {r['p99'] * 1e3:.2f}\n")
    png = args.out + ".png"
    plot = f"""set terminal png size 1200,900
set output '{png}'
set multiplot layout 3,2 title 'jugglite soak: {connected} streams, {args.churn:.0f} connects/s, 10+10 msg/s'
set xlabel 't (s)'
set key off
set title 'RSS (MiB)'; plot '{dat}' using 1:2 with lines
set title 'kernel slab (MiB)'; plot '{dat}' using 1:4 with lines
set title 'open descriptors'; plot '{dat}' using 1:3 with lines
set title 'connections open'; plot '{dat}' using 1:5 with lines
set title 'Redis channels'; plot '{dat}' using 1:6 with lines
set title 'delivery p99 (ms)'; plot '{dat}' using 1:7 with lines
unset multiplot
"""
    subprocess.run(["gnuplot"], input=plot, text=True, check=True)

    # Growth past the warm-up: first three samples after it against the last three.
    warm = max(60.0, seconds / 3)
    after = [r for r in rows if r["t"] >= warm]
    checks, figures = [], []
    if len(after) < 6:
        checks.append((f"at least 6 samples after the {warm:.0f} s warm-up (got {len(after)})", False))
    else:
        first, last = after[:3], after[-3:]
        bounds = {  # figure: (allowed growth, unit, scale)
            "rss": (max(2 * MiB, 0.02 * median(r["rss"] for r in first)), "MiB", MiB),
            "fds": (2, "", 1),
            "slab": (max(32 * MiB, 0.05 * median(r["slab"] for r in first)), "MiB", MiB),
            "open": (args.churn, "", 1),
            "subs": (args.churn * 6 + 10, "", 1),
        }
        for k, (allowed, unit, scale) in bounds.items():
            a, b = median(r[k] for r in first), median(r[k] for r in last)
            figures.append((k, f"{a / scale:.1f} -> {b / scale:.1f} {unit} (allowed +{allowed / scale:.1f})"))
            checks.append((f"{k} does not grow past the warm-up", b - a <= allowed))
    checks.append((f"no shared message lost ({lost_shared})", lost_shared == 0))
    checks.append((f"no private message lost ({lost_private})", lost_private == 0))
    checks.append((f"no stream closed by the server ({closed})", closed == 0))
    checks.append((f"no message delivered twice on a stream ({dup})", dup == 0))
    p99s = sorted(r["p99"] for r in after) if after else [0]
    figures.append(("delivery p99 per interval after the warm-up, median / max",
                    f"{median(p99s) * 1e3:.1f} / {p99s[-1] * 1e3:.1f} ms"))
    figures.append(("shared messages / private messages delivered",
                    f"{w.tag(SHARED)['frames']} / {w.tag(PRIVATE)['frames']}"))
    figures.append(("connects+disconnects done", rows[-1]["churned"] if rows else 0))

    md = [f"# Soak: {args.minutes:g} minutes, {time.strftime('%Y-%m-%d %H:%M')}", "",
          f"`scripts/soak --minutes {args.minutes:g}`: {connected} streams (shared channel + a private one "
          f"each), {args.churn:.0f} connects+disconnects/s, 10 msg/s shared + 10 msg/s private, "
          f"sampled every {args.interval:g} s; warm-up {warm:.0f} s.", "",
          f"![soak]({os.path.basename(png)})", "", "| figure | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in figures] + [""]
    md += [f"- {'pass' if ok else 'FAIL'}: {name}" for name, ok in checks] + [""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    failed = [n for n, ok in checks if not ok]
    print("soak: FAILED: " + "; ".join(failed) if failed else "soak: passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
