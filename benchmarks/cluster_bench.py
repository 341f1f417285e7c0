#!/usr/bin/env python3
"""Redis Cluster figures (scripts/bench cluster): what scale-out costs and saves.

On one 2-core machine six redis-servers, jugglite and the publisher share the CPUs, so
throughput scaling can't show. What does show, from one run, as ratios:

- Redis CPU per published message, summed over every node of a 3-master, 3-replica
  cluster: sharded pub/sub (SPUBLISH to the slot's master) against classic pub/sub on the
  same cluster (PUBLISH, which every node relays to every other over the cluster bus);
- how jugglite's subscriber connections and subscriptions spread over the nodes;
- the CPU of jugglite's Redis thread per message: on the cluster (sharded) against one Redis.

Each round runs the three modes back to back (sharded, classic, single) with the same
streams and messages: `--channels` streams, one per channel, and `--messages` 64-byte
messages spread over the channels, published pipelined. Every message must reach its
stream. Medians over `--rounds`.

    python3 benchmarks/cluster_bench.py --out benchmarks/results/<date>-vm-cluster.md
"""

import argparse
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos"))
import harness as h  # noqa: E402

NODE_TIMEOUT_MS = 1500


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_slot(key: str) -> int:
    k = key.encode()
    o = k.find(b"{")
    if o != -1:
        c = k.find(b"}", o + 1)
        if c > o + 1:
            k = k[o + 1:c]
    return crc16(k) % 16384


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        p = random.randrange(20000, 45000)
        ok = True
        for q in (p, p + 10000):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise RuntimeError("no free port pair")


class ClusterNode(h.Redis):
    def __init__(self):
        super().__init__(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--repl-diskless-sync-delay", "0",
                          "--client-output-buffer-limit", "pubsub 256mb 128mb 60"], port=cluster_port())


class Cluster:
    def __init__(self, masters=3, replicas=1):
        self.nodes = [ClusterNode() for _ in range(masters * (1 + replicas))]
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", str(replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        if h.wait_for(self.healthy, 30) is None:
            raise RuntimeError("the cluster did not become healthy")

    def healthy(self):
        for n in self.nodes:
            if "cluster_state:ok" not in n.cli("CLUSTER", "INFO"):
                return False
            info = n.cli("INFO", "replication")
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        return True

    def masters(self):
        """port -> [(lo, hi), ...] of every master serving slots."""
        out = {}
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            f = line.split()
            if "master" not in f[2] or "fail" in f[2] or len(f) < 9:
                continue
            port = int(f[1].split(":")[1].split("@")[0])
            ranges = []
            for r in f[8:]:
                if r.startswith("["):
                    continue
                lo, _, hi = r.partition("-")
                ranges.append((int(lo), int(hi or lo)))
            out[port] = ranges
        return out

    def seeds(self):
        return ",".join(f"redis://127.0.0.1:{n.port}" for n in self.nodes[:3])


def redis_cpu(port):
    """used_cpu_sys + used_cpu_user of the redis-server at `port`, in seconds."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "cpu"], capture_output=True, text=True).stdout
    total = 0.0
    for line in out.splitlines():
        if line.startswith(("used_cpu_sys:", "used_cpu_user:")):
            total += float(line.split(":")[1])
    return total


def thread_cpu(pid, name):
    """CPU seconds of `pid`'s thread named `name` (schedstat: nanoseconds, where stat's
    utime and stime count 10 ms ticks)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() != name:
                continue
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    raise RuntimeError(f"no thread {name}")


class Streams:
    """One stream per channel on a jugglite; a thread counts the frames each receives."""

    def __init__(self, j, channels):
        self.counts = {c: 0 for c in channels}
        self.sel = selectors.DefaultSelector()
        self.socks = []
        for c in channels:
            s = j.stream(c)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, c)
            self.socks.append(s)
        self.stop = False
        self.registered = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            for key, _ in self.sel.select(0.1):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                    continue
                self.counts[key.data] += data.count(b"\ndata: ") + data.startswith(b"data: ")
                self.registered += data.count(b": registered to channels")

    def total(self):
        return sum(self.counts.values())

    def close(self):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def publish(commands, batch=500):
    """Sends each (port, command) pipelined per port in batches; returns the summed integer
    replies (receivers)."""
    socks = {}
    per_port = {}
    for port, cmd in commands:
        per_port.setdefault(port, []).append(cmd)
    receivers = 0
    for port, cmds in per_port.items():
        s = socks.setdefault(port, socket.create_connection(("127.0.0.1", port)))
        f = s.makefile("rb")
        for i in range(0, len(cmds), batch):
            chunk = cmds[i:i + batch]
            s.sendall(b"".join(h.resp(*c) for c in chunk))
            for _ in chunk:
                line = f.readline()
                if line.startswith(b":"):
                    receivers += int(line[1:])
                elif line.startswith(b"-"):
                    raise RuntimeError(f"publish failed on {port}: {line!r}")
    for s in socks.values():
        s.close()
    return receivers


def run_mode(mode, cluster, single, channels, messages):
    if mode == "single":
        j = h.Jugglite(single, "--max-conns", 10000)
        cpu_nodes = [single.port]
    else:
        flags = ["--redis-cluster", cluster.seeds(), "--max-conns", 10000]
        if mode == "classic":
            flags += ["--redis-cluster-pubsub", "classic"]
        j = h.Jugglite(None, *flags)
        cpu_nodes = [n.port for n in cluster.nodes]
    streams = Streams(j, channels)
    if h.wait_for(lambda: streams.registered == len(channels), 30) is None:
        raise RuntimeError(f"{mode}: streams did not register")
    time.sleep(1)

    payload = "x" * 64
    if mode == "sharded":
        owner = {}
        for port, ranges in cluster.masters().items():
            for lo, hi in ranges:
                for slot in range(lo, hi + 1):
                    owner[slot] = port
        route = {c: owner[key_slot(c)] for c in channels}
        commands = [(route[channels[i % len(channels)]], ("SPUBLISH", channels[i % len(channels)], payload))
                    for i in range(messages)]
    elif mode == "classic":
        masters = sorted(cluster.masters())
        commands = [(masters[i % len(masters)], ("PUBLISH", channels[i % len(channels)], payload))
                    for i in range(messages)]
    else:
        commands = [(single.port, ("PUBLISH", channels[i % len(channels)], payload)) for i in range(messages)]

    redis_before = sum(redis_cpu(p) for p in cpu_nodes)
    thread_before = thread_cpu(j.proc.pid, "jugglite-redis")
    start = time.monotonic()
    publish(commands)
    done = h.wait_for(lambda: streams.total() >= messages, 60)
    elapsed = time.monotonic() - start
    time.sleep(0.5)  # the cluster bus relays a little after the last reply
    redis_after = sum(redis_cpu(p) for p in cpu_nodes)
    thread_after = thread_cpu(j.proc.pid, "jugglite-redis")
    m = j.metrics()
    spread = {s: v for s, v in m.items() if s.startswith("jugglite_redis_node_channels{")}
    links = {}
    if mode != "single":
        for n in cluster.nodes:
            clients = n.cli("CLIENT", "LIST", "TYPE", "pubsub")
            links[n.port] = len([c for c in clients.splitlines() if c.strip()])
    delivered = streams.total()
    streams.close()
    j.stop()
    return {
        "mode": mode,
        "delivered": delivered,
        "complete": done is not None,
        "seconds": elapsed,
        "redis_us_per_msg": (redis_after - redis_before) / messages * 1e6,
        "thread_us_per_msg": (thread_after - thread_before) / messages * 1e6,
        "spread": spread,
        "links": links,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=200)
    ap.add_argument("--messages", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    channels = [f"bench-{i}" for i in range(args.channels)]
    cluster = Cluster()
    single = h.Redis(["--client-output-buffer-limit", "pubsub 256mb 128mb 60"])
    results = {m: [] for m in ("sharded", "classic", "single")}
    for r in range(args.rounds):
        for mode in results:
            res = run_mode(mode, cluster, single, channels, args.messages)
            results[mode].append(res)
            print(f"round {r + 1} {mode}: delivered {res['delivered']}/{args.messages} in {res['seconds']:.2f} s, "
                  f"Redis {res['redis_us_per_msg']:.2f} us/msg, jugglite's Redis thread "
                  f"{res['thread_us_per_msg']:.2f} us/msg", flush=True)

    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("redis_us_per_msg", "thread_us_per_msg", "seconds")}
           for m, rs in results.items()}
    lost = {m: sum(args.messages - r["delivered"] for r in rs) for m, rs in results.items()}
    masters = cluster.masters()
    per_master = {p: sum(1 for c in channels if any(lo <= key_slot(c) <= hi for lo, hi in rs))
                  for p, rs in masters.items()}
    last = results["sharded"][-1]
    lines = [
        "# Redis Cluster: sharded against classic pub/sub, cluster against one Redis",
        "",
        f"`python3 benchmarks/cluster_bench.py --channels {args.channels} --messages {args.messages} "
        f"--rounds {args.rounds}` (through `scripts/bench cluster`), {time.strftime('%Y-%m-%d')}, "
        "on this 2-core VM: a 3-master, 3-replica cluster (cluster-node-timeout 1.5 s), one more "
        f"redis-server for the single mode, jugglite `--shards 2`; {args.channels} streams, one per "
        f"channel; {args.messages} messages of 64 bytes spread over the channels, published pipelined "
        "(SPUBLISH to each slot's master; PUBLISH round-robin over the masters; PUBLISH to the one "
        "Redis). Medians of the rounds; the modes alternate within each round.",
        "",
        "| mode | Redis CPU per message (all nodes) | jugglite's Redis thread per message | publish to last delivery | lost |",
        "|---|---|---|---|---|",
    ]
    for m in results:
        lines.append(f"| {m} | {med[m]['redis_us_per_msg']:.2f} µs | {med[m]['thread_us_per_msg']:.2f} µs | "
                     f"{med[m]['seconds']:.2f} s | {lost[m]} |")
    ratio_redis = med["sharded"]["redis_us_per_msg"] / med["classic"]["redis_us_per_msg"]
    ratio_thread = med["sharded"]["thread_us_per_msg"] / med["single"]["thread_us_per_msg"]
    lines += [
        "",
        f"- **Redis CPU per message, sharded / classic: {ratio_redis:.2f}x** (classic pub/sub makes "
        "every node relay every message over the cluster bus).",
        f"- **jugglite's Redis thread per message, cluster (sharded) / one Redis: {ratio_thread:.2f}x.**",
        "",
        "Where the channels live (sharded, last round):",
        "",
        "| master | channels in its slots | jugglite's channels on its link | pub/sub connections on the node |",
        "|---|---|---|---|",
    ]
    for p in sorted(masters):
        series = f'jugglite_redis_node_channels{{node="127.0.0.1:{p}",role="master"}}'
        lines.append(f"| 127.0.0.1:{p} | {per_master[p]} | {int(last['spread'].get(series, 0))} | "
                     f"{last['links'].get(p, 0)} |")
    replicas = [n.port for n in cluster.nodes if n.port not in masters]
    lines.append("")
    lines.append("Replicas hold no jugglite connection in this mode: " +
                 ", ".join(f"127.0.0.1:{p}: {last['links'].get(p, 0)}" for p in replicas) + ".")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    bad = [m for m in results if lost[m] > 0]
    if bad:
        print(f"messages lost in: {', '.join(bad)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
