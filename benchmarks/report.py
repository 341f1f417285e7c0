#!/usr/bin/env python3
"""Turns the loadgen JSON files of one scripts/bench run into a markdown report with
gnuplot PNGs (latency CDF per server, memory against connections).

usage: report.py RAW_DIR OUT.md
"""
import glob
import json
import os
import subprocess
import sys

SERVERS = ["jugglite", "nchan", "floor"]


def load(raw):
    runs = {}
    for path in glob.glob(os.path.join(raw, "*.json")):
        name = os.path.basename(path)[:-5]
        scenario, server = name.rsplit("-", 1)
        with open(path) as f:
            runs.setdefault(scenario, {})[server] = json.load(f)
    return runs


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def fanout_rounds(runs):
    """The fan-out rounds' runs by server: scenarios fanout, fanout.r2, ..."""
    return [rs for k, rs in runs.items() if k == "fanout" or k.startswith("fanout.r")]


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def saturation_point(run):
    """Highest deliveries/s whose step kept p99 <= 250 ms with nothing lost."""
    best = None
    for st in run.get("steps", []):
        if st["lost"] == 0 and st["p99_ms"] <= 250:
            best = st["deliveries_per_s"] if best is None else max(best, st["deliveries_per_s"])
    return best


def plot(raw, out_png, title, xlabel, ylabel, series, logx=False):
    """series: list of (label, datafile, using) tuples."""
    if not series:
        return False
    script = [
        "set terminal pngcairo size 900,540" if has_cairo() else "set terminal png size 900,540",
        f"set output '{out_png}'",
        f"set title '{title}'",
        f"set xlabel '{xlabel}'",
        f"set ylabel '{ylabel}'",
        "set grid",
        "set key bottom right",
    ]
    if logx:
        script.append("set logscale x")
    parts = [f"'{f}' using {u} with linespoints title '{label}'" for label, f, u in series]
    script.append("plot " + ", ".join(parts))
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
    return True


def has_cairo():
    out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (out.stdout + out.stderr)


def main():
    raw, out_md = sys.argv[1], sys.argv[2]
    runs = load(raw)
    base = os.path.splitext(out_md)[0]
    lines = [f"# jugglite benchmark: {os.path.basename(base)}", ""]
    lines.append("Produced by `scripts/bench` (benchmarks/loadgen against each server in turn, on "
                 "one 2-core machine; the load generator runs on the same cores). Ratios compare "
                 "servers within this one run.")
    lines.append("")

    # Targets table.
    t = []
    idle100 = runs.get("idle-100000", {}).get("jugglite")
    fan = runs.get("fanout", {})
    sat = runs.get("saturation", {})
    jf, nf, ff = (fan.get(s) for s in SERVERS)
    js, ns, fs = (sat.get(s) for s in SERVERS)

    def step_at(run, rate):
        for st in (run or {}).get("steps", []):
            if st["rate"] == rate:
                return st
        return None

    lines.append("## Targets")
    lines.append("")
    lines.append("| target | jugglite | nchan | floor | met |")
    lines.append("|---|---|---|---|---|")
    if idle100:
        n_idle = runs["idle-100000"].get("nchan")
        ok = idle100["connected"] == 100000 and idle100["delivered"] == idle100["connected"]
        lines.append(f"| 100K streams, 0 failed, all get a broadcast | {idle100['connected']} open, "
                     f"{idle100['failed']} failed, {idle100['delivered']} got it | "
                     f"{n_idle['connected'] if n_idle else 'n/a'} open | n/a (one process) | "
                     f"{'yes' if ok else 'no'} |")
        rss = idle100["rss_per_conn"]
        lines.append(f"| user-space RSS per idle conn at 100K <= 512 B | {rss:.0f} B | "
                     f"{fmt(n_idle['rss_per_conn'], 0) + ' B' if n_idle else 'n/a'} | n/a | "
                     f"{'yes' if rss <= 512 else 'no'} |")
    if jf and nf:
        rounds = fanout_rounds(runs)

        def fanout_median(server, key):
            return median(rs[server]["steps"][0][key] for rs in rounds if server in rs)

        jc, nc, fc = (fanout_median(s, "cpu_us_per_frame") for s in SERVERS)
        jp, np_, fp = (fanout_median(s, "p99_ms") for s in SERVERS)
        of = f" (median of {len(rounds)} rounds)" if len(rounds) > 1 else ""
        lines.append(f"| fan-out CPU us/frame <= 0.8x nchan{of} | {jc:.2f} ({ratio(jc, nc)}) | {nc:.2f} | "
                     f"{fmt(fc, 2)} | {'yes' if jc <= 0.8 * nc else 'no'} |")
        lines.append(f"| fan-out p99 <= 0.5x nchan{of} | {jp:.1f} ms ({ratio(jp, np_)}) | {np_:.1f} ms | "
                     f"{fmt(fp)} ms | {'yes' if jp <= 0.5 * np_ else 'no'} |")
    if js:
        s20 = step_at(js, 20)
        n20, f20 = step_at(ns, 20), step_at(fs, 20)
        if s20:
            ok = s20["p99_ms"] <= 250 and s20["lost"] == 0
            lines.append(f"| 10K x 20 msg/s: p99 <= 250 ms, 0 lost | p99 {s20['p99_ms']:.1f} ms, lost {s20['lost']} | "
                         f"{'p99 %.1f ms, lost %d' % (n20['p99_ms'], n20['lost']) if n20 else 'n/a'} | "
                         f"{'p99 %.1f ms, lost %d' % (f20['p99_ms'], f20['lost']) if f20 else 'n/a'} | "
                         f"{'yes' if ok else 'no'} |")
        jsp, nsp, fsp = saturation_point(js), saturation_point(ns or {}), saturation_point(fs or {})
        lines.append(f"| saturation deliveries/s >= 2x nchan | {fmt(jsp, 0)} ({ratio(jsp, nsp)}) | "
                     f"{fmt(nsp, 0)} | {fmt(fsp, 0)} | "
                     f"{'yes' if jsp and nsp and jsp >= 2 * nsp else 'no'} |")
    total_lost = {s: 0 for s in SERVERS}
    for scen in runs.values():
        for s, r in scen.items():
            total_lost[s] = total_lost.get(s, 0) + r["lost"]
    lines.append(f"| zero lost frames (all scenarios) | {total_lost['jugglite']} | "
                 f"{total_lost.get('nchan', 0)} | {total_lost.get('floor', 0)} | "
                 f"{'yes' if total_lost['jugglite'] == 0 else 'no'} |")
    lines.append("")

    # Per scenario detail.
    lines.append("## All runs")
    lines.append("")
    lines.append("| scenario | server | open/asked | connect/s | RSS/conn | kernel slab/conn | "
                 "delivered/expected | lost | dup | reorder | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | CPU us/frame |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scen in sorted(runs):
        for s in SERVERS:
            r = runs[scen].get(s)
            if not r or "steps" not in r:  # the resume storm has a table of its own
                continue
            cpu = max((st["cpu_us_per_frame"] for st in r["steps"]), default=0)
            lines.append(
                f"| {scen} | {s} | {r['connected']}/{r['conns']} | {r['connect_rate']:.0f} | "
                f"{r['rss_per_conn']:.0f} B | {r['slab_per_conn']:.0f} B | {r['delivered']}/{r['expected']} | "
                f"{r['lost']} | {r['dup']} | {r['reorder']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['p999_ms']:.1f} | {r['max_ms']:.1f} | {cpu:.2f} |")
            if scen == "channels" and r.get("probe"):
                probe = r["probe"].strip().replace("\n", ", ")
                lines.append(f"| | | Redis: NUMSUB shared, private channels subscribed = {probe} | | | | | | | | | | | | | |")
    lines.append("")

    if sat:
        lines.append("## Saturation steps (10K subscribers)")
        lines.append("")
        lines.append("| msg/s | deliveries/s | " + " | ".join(f"{s} p99 ms / lost" for s in SERVERS if s in sat) + " |")
        lines.append("|---|---|" + "---|" * len([s for s in SERVERS if s in sat]))
        rates = [st["rate"] for st in sat.get("jugglite", next(iter(sat.values())))["steps"]]
        for rate in rates:
            cells = []
            for s in SERVERS:
                if s not in sat:
                    continue
                st = step_at(sat[s], rate)
                cells.append(f"{st['p99_ms']:.1f} / {st['lost']}" if st else "n/a")
            conns = sat.get("jugglite", next(iter(sat.values())))["connected"]
            lines.append(f"| {rate:g} | {rate * conns:.0f} | " + " | ".join(cells) + " |")
        lines.append("")

    churn = runs.get("churn", {})
    if churn:
        lines.append("## Churn (10K streams during a broadcast, plus 1K connects and disconnects per second)")
        lines.append("")
        lines.append("| server | churn connections | RSS before | RSS 2 s after churn | change | stable streams lost |")
        lines.append("|---|---|---|---|---|---|")
        for s in SERVERS:
            r = churn.get(s)
            if not r:
                continue
            before, after = r["rss_idle"], r["rss_after"]
            lines.append(f"| {s} | {r['churned']} | {before / 1048576:.1f} MiB | {after / 1048576:.1f} MiB | "
                         f"{(after - before) / 1048576:+.1f} MiB | {r['lost']} |")
        metrics = os.path.join(raw, "churn-jugglite.metrics.txt")
        if os.path.exists(metrics):
            with open(metrics) as f:
                text = f.read().split("\r\n\r\n", 1)[-1]

            def total(*names):
                """The sum of the samples of the first of `names` /metrics has (older runs
                used the names before the Prometheus ones)."""
                for name in names:
                    vals = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                            if l.startswith((name + " ", name + "{"))]
                    if vals:
                        return f"{sum(vals):.0f}"
                return "?"
            lines.append("")
            lines.append(f"jugglite's own counters after all clients left: connections_open "
                         f"{total('jugglite_connections_open', 'connections_open')}, opened "
                         f"{total('jugglite_connections_opened_total', 'connections_opened')}, closed "
                         f"{total('jugglite_connections_closed_total', 'connections_closed')} (every slot returned).")
        lines.append("")

    connects = {k.split("-", 1)[1]: rs["jugglite"] for k, rs in runs.items()
                if k.startswith("auth.connect-") and "jugglite" in rs}
    if connects:
        lines.append("## Authorization: connect rates (10K streams, as fast as the load generator goes)")
        lines.append("")
        lines.append("| streams authorized by | answered 200/asked | closed by the server (refused to retry) | seconds to open all | connects/s | vs none |")
        lines.append("|---|---|---|---|---|---|")
        none = connects.get("none")
        for mode in ["none", "hs256", "rs256", "callback"]:
            r = connects.get(mode)
            if not r:
                continue
            lines.append(f"| {mode} | {r['connected']}/{r['conns']} | {r['closed_early']} | {r['connect_seconds']:.2f} | "
                         f"{r['connect_rate']:.0f} | {ratio(r['connect_rate'], none['connect_rate'] if none else None)} |")
        lines.append("")
    quiet = [rs["jugglite"] for k, rs in runs.items() if k.startswith("auth.fanout-quiet") and "jugglite" in rs]
    busy = [rs["jugglite"] for k, rs in runs.items() if k.startswith("auth.fanout-churn") and "jugglite" in rs]
    plain = [rs["jugglite"] for k, rs in runs.items() if k.startswith("auth.fanout-plainchurn") and "jugglite" in rs]
    if quiet and busy:
        q = median(r["steps"][0]["p99_ms"] for r in quiet)
        lines.append("## Authorization: fan-out while connects go through the auth callback")
        lines.append("")
        lines.append(f"10K streams, 5 msg/s, 64 B; medians of {len(quiet)} rounds. Every run also "
                     "has the load generator and the callback's app on the same 2 cores.")
        lines.append("")
        lines.append("| | p99 ms | vs no connects | CPU us/frame | lost | churn connections |")
        lines.append("|---|---|---|---|---|---|")
        for label, runs_of in [("no connects (streams authorized by the callback)", quiet),
                               ("1K connects/s through the callback", busy),
                               ("1K connects/s, no authorization (reference)", plain)]:
            if not runs_of:
                continue
            p = median(r["steps"][0]["p99_ms"] for r in runs_of)
            cpu = median(r["steps"][0]["cpu_us_per_frame"] for r in runs_of)
            churned = median(r.get("churned", 0) for r in runs_of)
            lines.append(f"| {label} | {p:.1f} | {ratio(p, q)} | {cpu:.2f} | "
                         f"{sum(r['lost'] for r in runs_of)} | {churned:.0f} |")
        lines.append("")

    storms = sorted((k, rs["jugglite"]) for k, rs in runs.items()
                    if k.startswith("resume.storm") and "jugglite" in rs)
    if storms:
        lines.append("## Resume: a Last-Event-ID reconnect storm")
        lines.append("")
        first = storms[0][1]
        lines.append(f"{first['conns']} streams on {first['channels']} channels, FCALL jugglite_publish at "
                     f"{first['rate']:.0f} msg/s; jugglite --history killed (SIGKILL), restarted 1 s later, and "
                     "every stream reconnects at once with its Last-Event-ID while publishing goes on. "
                     "Caught up: the stream has received the last message published on its channel before "
                     "the reconnects began; times from the restart. Redis commands: jugglite's own during "
                     "the storm, from the restart until every stream caught up (the publisher's FCALLs and "
                     "the commands they run are left out).")
        lines.append("")
        lines.append("| round | caught up | all caught up (s) | p50 ms | p99 ms | max ms | lost | duplicates | resets | XRANGE | MULTI | jugglite's Redis commands |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        publisher_side = {"fcall", "xadd", "xrevrange", "xtrim", "pexpire", "set", "info"}
        for k, r in storms:
            by = r["redis_commands_by_name"]
            calls = by.get("fcall", 0)
            # Each FCALL also runs GET, TIME and PUBLISH once: those are the publisher's too.
            own = sum(v for name, v in by.items() if name not in publisher_side) - 3 * calls
            ms = r["caught_up_ms"]
            lines.append(f"| {k.rsplit('.', 1)[-1]} | {r['caught_up']}/{r['conns']} | {r['all_caught_up_s']:.2f} | "
                         f"{ms['p50']:.0f} | {ms['p99']:.0f} | {ms['max']:.0f} | {r['lost']} | {r['duplicates']} | "
                         f"{r['resets']} | {by.get('xrange', 0)} | {by.get('multi', 0)} | {own} |")
        lines.append("")
    fan = {mode: [rs["jugglite"] for k, rs in runs.items()
                  if k.startswith(f"resume.fanout-{mode}") and "jugglite" in rs] for mode in ["publish", "fcall"]}
    if fan["publish"] and fan["fcall"]:
        lines.append("## Resume: fan-out cost of FCALL jugglite_publish against PUBLISH")
        lines.append("")
        lines.append(f"jugglite --history, {fan['publish'][0]['conns']} streams, 5 msg/s, 64 B; medians of "
                     f"{len(fan['publish'])} alternating rounds.")
        lines.append("")
        lines.append("| published with | p99 ms | CPU us/frame | vs PUBLISH | lost |")
        lines.append("|---|---|---|---|---|")
        base_cpu = median(r["steps"][0]["cpu_us_per_frame"] for r in fan["publish"])
        for mode, label in [("publish", "PUBLISH"), ("fcall", "FCALL jugglite_publish")]:
            rs = fan[mode]
            cpu = median(r["steps"][0]["cpu_us_per_frame"] for r in rs)
            p = median(r["steps"][0]["p99_ms"] for r in rs)
            lines.append(f"| {label} | {p:.1f} | {cpu:.2f} | {ratio(cpu, base_cpu)} | {sum(r['lost'] for r in rs)} |")
        lines.append("")

    # Plots.
    cdf_png = base + "-latency-cdf.png"
    series = [(s, os.path.join(raw, f"fanout-{s}.cdf.dat"), "1:2") for s in SERVERS
              if os.path.exists(os.path.join(raw, f"fanout-{s}.cdf.dat"))]
    if plot(raw, cdf_png, "fan-out: publish -> receive latency CDF (10K subscribers, 5 msg/s)",
            "latency (ms)", "fraction of deliveries", series, logx=True):
        lines.append(f"![latency CDF]({os.path.basename(cdf_png)})")
        lines.append("")
    mem_series = []
    for s in SERVERS:
        pts = []
        for scen, rs in runs.items():
            if scen.startswith("idle-") and s in rs and rs[s]["connected"] > 0:
                pts.append((rs[s]["connected"], (rs[s]["rss_idle"] - rs[s]["rss_base"]) / 1048576))
        if pts:
            dat = os.path.join(raw, f"memory-{s}.dat")
            with open(dat, "w") as f:
                for n, mib in sorted(pts):
                    f.write(f"{n} {mib:.2f}\n")
            mem_series.append((s, dat, "1:2"))
    mem_png = base + "-memory.png"
    if plot(raw, mem_png, "server RSS growth against open idle streams", "open streams",
            "RSS growth (MiB)", mem_series):
        lines.append(f"![memory]({os.path.basename(mem_png)})")
        lines.append("")

    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
