#!/usr/bin/env python3
"""Reproduces the delivery defects of issue 9 against one jugglite binary and prints a
figure for each, so that two builds can be compared in one run:

    benchmarks/delivery_defects.py build/release/jugglite [OLD_BINARY ...]

Each scenario starts its own redis-server and jugglite on free loopback ports, uses raw
sockets, and stops everything it started. Needs redis-server, redis-cli and prlimit.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos"))
from harness import Jugglite, Redis  # noqa: E402  (the same servers as scripts/chaos)


def read_until(sock, needle, timeout=5.0):
    sock.settimeout(0.2)
    buf = b""
    end = time.time() + timeout
    while time.time() < end:
        try:
            d = sock.recv(1 << 20)
            if not d:
                return buf, False
            buf += d
            if needle in buf:
                return buf, True
        except socket.timeout:
            pass
    return buf, False


@contextlib.contextmanager
def servers(binary, redis_args=(), credentials="", args=(), nofile=None):
    """A redis-server and jugglite against it, both stopped however the scenario ends."""
    r = Redis(redis_args)
    try:
        j = Jugglite(r, *args, binary=binary, redis_url=f"redis://{credentials}127.0.0.1:{r.port}",
                     nofile=nofile, ready=False)
        try:
            yield r, j
        finally:
            j.stop()
    finally:
        r.stop()


def frozen_redis(binary):
    """1. SIGSTOP the redis-server: how long until /healthz says 503 (cap 30 s)."""
    with servers(binary) as (r, j):
        time.sleep(1)
        os.kill(r.proc.pid, signal.SIGSTOP)
        t0 = time.time()
        took = None
        while time.time() - t0 < 30:
            if j.status("/healthz") != 200:
                took = time.time() - t0
                break
            time.sleep(0.2)
        os.kill(r.proc.pid, signal.SIGCONT)
    return f"/healthz 503 after {took:.1f} s" if took else "/healthz still 200 after 30 s"


def large_message(binary):
    """2. Three subscribers, a 2 MB PUBLISH then a small one: how many got both, still open."""
    with servers(binary) as (r, j):
        subs = [j.stream("big") for _ in range(3)]
        for s in subs:
            read_until(s, b"registered")
        time.sleep(0.3)
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("x" * (2 * 1024 * 1024))
            path = f.name
        subprocess.run(f"redis-cli -p {r.port} -x PUBLISH big < {path}", shell=True, capture_output=True)
        r.cli("PUBLISH", "big", "small-after")
        got = sum(1 for s in subs if read_until(s, b"data: small-after\n\n", 10)[1])
        slow = sum(int(line.split()[-1]) for line in j.get("/metrics").splitlines()
                   if line.startswith(("jugglite_slow_consumers_total", "slow_consumers ")))
        os.unlink(path)
    return f"{got}/3 subscribers got the 2 MB message and the next; slow_consumers={slow}"


def acl(binary):
    """3. A user allowed &ok*: a stream asks for ok1,bad1; does ok1 deliver; health after a restart."""
    user = ["--user", "jugg", "on", ">pw", "resetchannels", "&ok*", "+subscribe", "+unsubscribe",
            "+ping"]
    with servers(binary, user, credentials="jugg:pw@") as (r, j):
        s = j.stream("ok1,bad1")
        read_until(s, b"registered", 3)
        time.sleep(0.5)
        r.cli("PUBLISH", "ok1", "allowed")
        delivered = read_until(s, b"data: allowed", 3)[1]
        r.stop()
        r.start()
        time.sleep(8)
        health = j.status("/healthz")
    return f"ok1 delivered={delivered}; /healthz {health} 8 s after a Redis restart"


def registered_race(binary, tries=100):
    """4. Publish the moment the registration comment is seen: how many arrive."""
    with servers(binary) as (r, j):
        got = 0
        for i in range(tries):
            s = j.stream(f"race{i}")
            if not read_until(s, b"registered", 5)[1]:
                continue
            r.cli("PUBLISH", f"race{i}", "first")
            got += read_until(s, b"data: first", 1)[1]
            s.close()
    return f"{got}/{tries} delivered"


def unsubscribe_churn(binary, reloads=200):
    """5. A page reload (disconnect, reconnect at once): SUBSCRIBE/UNSUBSCRIBE commands Redis saw."""
    with servers(binary) as (r, j):
        before = r.cli("INFO", "commandstats")
        for _ in range(reloads):
            s = j.stream("reload")
            read_until(s, b"registered", 3)
            s.close()
        time.sleep(1)
        stats = r.cli("INFO", "commandstats")
        def calls(text, cmd):
            for line in text.splitlines():
                if line.startswith(f"cmdstat_{cmd}:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0
        n = sum(calls(stats, c) - calls(before, c) for c in ("subscribe", "unsubscribe"))
    return f"{n} SUBSCRIBE+UNSUBSCRIBE for {reloads} reloads"


def shutdown(binary, streams=2000, channels=64):
    """6. SIGTERM with streams x 64 channels: seconds until exit."""
    with servers(binary) as (r, j):
        socks = []
        for i in range(streams):
            names = ",".join(f"c{i % 200}-{k}" for k in range(channels))
            socks.append(j.stream(names))
        for s in socks:
            read_until(s, b"registered", 10)
        t0 = time.time()
        j.proc.send_signal(signal.SIGTERM)
        j.proc.wait(timeout=60)
        took = time.time() - t0
    return f"exit {j.proc.returncode} after {took:.2f} s ({streams} streams x {channels} channels)"


def capacity_refusal(binary):
    """7. At --max-conns, what an EventSource gets: 200 + retry (it comes back) or 503 (final)."""
    with servers(binary, args=["--max-conns", "1"]) as (r, j):
        time.sleep(0.5)
        hold = j.stream("hold")
        read_until(hold, b"registered", 3)
        s = j.stream("x")
        out, _ = read_until(s, b"\n\n", 3)
        first = out.split(b"\r\n")[0].decode()
        retry = b"retry:" in out
    return f"'{first}', retry field: {retry}"


def max_conns(binary, conns=1200):
    """8. RLIMIT_NOFILE 300 (a ring's table: 236 slots), --max-conns 1200: streams registered."""
    with servers(binary, args=["--max-conns", str(conns)], nofile=300) as (r, j):
        time.sleep(0.5)
        socks = [j.stream("cap") for _ in range(conns)]
        got = sum(1 for s in socks if read_until(s, b"registered", 3)[1])
    return f"{got}/{conns} registered"


SCENARIOS = [frozen_redis, large_message, acl, registered_race, unsubscribe_churn, shutdown,
             capacity_refusal, max_conns]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for scenario in SCENARIOS:
        print(f"{scenario.__doc__.strip().splitlines()[0]}")
        for binary in sys.argv[1:]:
            try:
                result = scenario(binary)
            except Exception as e:  # one scenario's failure must not hide the others
                result = f"error: {e}"
            print(f"    {binary}: {result}", flush=True)


if __name__ == "__main__":
    main()
