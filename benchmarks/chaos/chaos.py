#!/usr/bin/env python3
"""jugglite under faults: Redis killed, frozen and cut off during a fan-out; slowloris;
connect/RST storms; readers that stop; overload. Each scenario states its pass condition,
prints its figures and checks them; the exit status is 1 when a check failed.

--short runs every scenario at a smaller scale and checks behaviour only: the timing
ratios (the slowloris p99) are reported but judged only in the full run, since 2 shared
cores make them noisy."""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from harness import Jugglite, Publisher, Redis, Report, Watcher, WORK, stop_all, wait_for

MiB = 1 << 20
GAP = 15  # the tag between phases: loadgen keeps tags 0-15, and this one is never checked


def lost(pub, watcher, tag, streams):
    """Deliveries of `tag` that did not arrive at `streams` open streams."""
    return max(0, pub.expected(tag) * streams - watcher.tag(tag)["frames"])


def run_phase(pub, tag, seconds):
    """Publishes under `tag` for `seconds`, then under GAP, so that `tag` stops growing and
    can settle."""
    pub.tag = tag
    time.sleep(seconds)
    pub.tag = GAP
    return tag


def settle(pub, watcher, tag, streams, timeout=15):
    wait_for(lambda: lost(pub, watcher, tag, streams) == 0, timeout, 0.2)


def redis_faults(rep, scale):
    n = scale(10_000, 1_000)
    rep.section(f"Redis faults during a {n}-stream fan-out",
                "through a kill and restart, a 6 s freeze and CLIENT KILL TYPE pubsub: no stream "
                "closes, /readyz is 503 while the link is down and 200 after, and every message "
                "published after recovery reaches every stream")
    redis = Redis()
    j = Jugglite(redis)
    w = Watcher(j.port, n, 3600)
    w.wait_connected()
    rep.figure("streams", w.last["connected"])
    pub = Publisher(redis, rate=20)
    pub.tag = GAP
    tags = iter(range(1, GAP))

    def phase(seconds):
        return run_phase(pub, next(tags), seconds)

    def fault_begins():
        pub.tag = next(tags)
        return pub.tag

    before = phase(3)
    settle(pub, w, before, n)
    rep.figure("lost before any fault", lost(pub, w, before, n))

    def recovered(name, fault_tag):
        back = wait_for(lambda: j.status("/readyz") == 200, 30)
        pub.tag = GAP
        rep.figure(f"{name}: /readyz 200 again after", f"{back:.2f} s" if back is not None else "never")
        rep.check(f"{name}: /readyz back to 200", back is not None)
        after = phase(4)
        settle(pub, w, after, n)
        pub.tag = GAP
        rep.figure(f"{name}: during it, deliveries missing of messages Redis counted a subscriber for",
                   lost(pub, w, fault_tag, n))
        rep.figure(f"{name}: messages published after recovery", pub.expected(after))
        rep.check(f"{name}: every message after recovery reached all {n} streams",
                  pub.expected(after) > 0 and lost(pub, w, after, n) == 0)
        rep.check(f"{name}: no stream closed", w.last["closed"] == 0)

    # Killed, down 3 s, restarted on the same port.
    fault = fault_begins()
    redis.kill()
    t503 = wait_for(lambda: j.status("/readyz") == 503, 10)
    rep.figure("kill: /readyz 503 after", f"{t503:.2f} s" if t503 is not None else "never")
    rep.check("kill: /readyz turns 503", t503 is not None)
    rep.check("kill: /livez stays 200", j.status("/livez") == 200)
    time.sleep(3)
    rep.check("kill: streams still open while Redis is down",
              j.metrics().get("jugglite_connections_open") == n)
    redis.start()
    recovered("kill", fault)

    # Frozen (SIGSTOP) past the link's 3 s reply timeout.
    fault = fault_begins()
    redis.freeze()
    t503 = wait_for(lambda: j.status("/readyz") == 503, 10)
    rep.figure("freeze: /readyz 503 after", f"{t503:.2f} s" if t503 is not None else "never")
    rep.check("freeze: /readyz turns 503 while Redis is frozen", t503 is not None)
    time.sleep(max(0.0, 6 - (t503 or 0)))
    redis.thaw()
    recovered("freeze", fault)

    # Its subscriber connection killed from the Redis side.
    fault = fault_begins()
    killed = redis.cmd("CLIENT", "KILL", "TYPE", "pubsub")
    rep.figure("CLIENT KILL TYPE pubsub: connections killed", killed)
    recovered("client kill", fault)
    m = j.metrics()
    rep.figure("jugglite_redis_reconnects_total", m.get("jugglite_redis_reconnects_total"))
    rep.check("streams open at the end (jugglite_connections_open)", m.get("jugglite_connections_open") == n)
    pub.stop()
    w.end()


def slowloris(rep, scale, full):
    live, idle = scale(1_000, 200), scale(15_000, 2_000)
    seconds, rounds = scale(20, 6), scale(3, 1)
    rep.section(f"Slowloris: {idle} idle sockets beside {live} live streams",
                f"the live streams lose nothing, and their p99 is within 1.2x of a run without the "
                f"attack (the medians of {rounds} alternating rounds; judged in the full run only); "
                f"the silent half of the idle sockets holds no connection of jugglite's (the kernel "
                f"keeps them half-open until they send: TCP_DEFER_ACCEPT), and every socket of the "
                f"other half, sending one byte every 5 s, gets 408 and is closed")
    redis = Redis()
    j = Jugglite(redis)

    def run(attack):
        w = Watcher(j.port, live, 3600, path="/stream?channel=loris")
        w.wait_connected()
        socks = []
        held = None  # connections jugglite gained from the silent sockets
        if attack:
            open_before = j.metrics().get("jugglite_connections_open")
            for i in range(idle):
                s = socket.socket()
                s.bind((f"127.0.0.{2 + i % 16}", 0))
                s.connect(("127.0.0.1", j.port))
                s.setblocking(False)
                socks.append(s)
            time.sleep(3)  # jugglite would accept the backlog before the measured phase starts
            held = j.metrics().get("jugglite_connections_open") - open_before
        pub = Publisher(redis, channel="loris", rate=20)
        start = time.monotonic()
        pub.tag = 1
        trickle_at = start
        while time.monotonic() - start < seconds:
            if attack and time.monotonic() >= trickle_at:
                for s in socks[1::2]:
                    try:
                        s.send(b"G")
                    except OSError:
                        pass
                trickle_at += 5
            time.sleep(0.1)
        pub.tag = GAP
        pub.stop()
        settle(pub, w, 1, live)
        result = (w.tag(1)["p99_ms"], lost(pub, w, 1, live), pub.expected(1))
        answered = 0
        if attack:
            # The request timeout is 10 s from the accept, which follows the first byte.
            deadline = time.monotonic() + 15
            pending = set(range(1, len(socks), 2))
            while pending and time.monotonic() < deadline:
                for i in list(pending):
                    try:
                        data = socks[i].recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        pending.discard(i)
                        continue
                    if data.startswith(b"HTTP/1.1 408"):
                        answered += 1
                    pending.discard(i)
                time.sleep(0.2)
            for s in socks:
                s.close()
        w.end()
        return result, answered, held

    base, attacked, answers, holds, ok = [], [], [], [], True
    for _ in range(rounds):
        (p99, lost_n, sent), _, _ = run(False)
        base.append(p99)
        ok &= sent > 0 and lost_n == 0
        (p99, lost_n, sent), answered, held = run(True)
        attacked.append(p99)
        answers.append(answered)
        holds.append(held)
        ok &= sent > 0 and lost_n == 0
    med_base, med_attack = sorted(base)[len(base) // 2], sorted(attacked)[len(attacked) // 2]
    rep.figure("live p99 without the attack, by round", " / ".join(f"{p:.1f}" for p in base) + " ms")
    rep.figure("live p99 under the attack, by round", " / ".join(f"{p:.1f}" for p in attacked) + " ms")
    ratio = med_attack / med_base if med_base else float("inf")
    rep.figure("p99 ratio of the medians", f"{ratio:.2f}x")
    trickling = idle // 2
    rep.figure("connections jugglite held for the idle sockets before any sent, by round",
               " / ".join(f"{h}/{idle}" for h in holds))
    rep.figure("trickling sockets answered 408 and closed, by round",
               " / ".join(f"{a}/{trickling}" for a in answers))
    rep.figure("jugglite_request_timeouts_total", j.metrics().get("jugglite_request_timeouts_total"))
    rep.check("live streams lost nothing (without and under the attack)", ok)
    rep.check("silent sockets held no connection of jugglite's", all(h == 0 for h in holds))
    rep.check("every trickling socket got 408 and was closed", all(a == trickling for a in answers))
    if full:
        rep.check("live p99 under the attack within 1.2x of without (medians)", ratio <= 1.2)


def rst_storm(rep, scale):
    n = scale(50_000, 3_000)
    rep.section(f"Connect/RST storm: 3 rounds of {n} connects that reset at once",
                "jugglite_connections_open is back to 0 after each round, and RSS does not grow "
                "from the second round to the third (memory the allocator keeps after the first "
                "is fine)")
    redis = Redis()
    j = Jugglite(redis)
    rss = []
    for r in range(3):
        w = Watcher(j.port, n, 1, path="/stream?channel=storm", workers=max(2, n // 15_000 + 1),
                    sources=16, ramp=50_000, extra=["--rst"])
        connected = w.wait_connected(120)
        w.proc.wait()
        back = wait_for(lambda: j.metrics().get("jugglite_connections_open") == 0, 30, 0.2)
        time.sleep(1)
        rss.append(j.rss())
        rep.figure(f"round {r + 1}", f"{connected} connected, open back to 0 after "
                   f"{f'{back:.1f} s' if back is not None else 'never'}, RSS {rss[-1] / MiB:.1f} MiB")
        rep.check(f"round {r + 1}: jugglite_connections_open back to 0", back is not None)
        rep.check(f"round {r + 1}: all {n} connected", connected == n)
    growth = rss[2] - rss[1]
    rep.figure("RSS growth, round 2 to round 3", f"{growth / MiB:+.2f} MiB")
    rep.check("RSS does not grow from round 2 to round 3 (within 1 MiB)", growth <= MiB)


def stopped_readers(rep, scale):
    victims, others = scale(1_000, 100), scale(2_000, 200)
    rep.section(f"Readers that stop: {victims} streams of a SIGSTOPped load generator beside {others}",
                "the stopped streams are dropped as slow consumers and counted; the other streams "
                "lose nothing and none of them closes")
    redis = Redis()
    # The kernel takes up to tcp_wmem's maximum (4 MiB) of a stopped reader's data before
    # jugglite queues any: the stopped streams also hear a heavy channel (16 KiB messages,
    # 1 MiB/s) that fills that in seconds, and a small --max-pending drops them soon after.
    j = Jugglite(redis, "--max-pending", 65536)
    victim = Watcher(j.port, victims, 3600, path="/stream?channel=stop,heavy")
    victim.wait_connected()
    bystander = Watcher(j.port, others, 3600, path="/stream?channel=stop")
    bystander.wait_connected()
    victim.stop_reading()
    pub = Publisher(redis, channel="stop", rate=50, size=1024)
    heavy = Publisher(redis, channel="heavy", rate=64, size=16384)
    heavy.tag = GAP
    pub.tag = 1
    dropped = wait_for(lambda: j.metrics().get("jugglite_slow_consumers_total", 0) >= victims, 60, 0.5)
    heavy.stop()
    run_phase(pub, 2, 3)
    pub.stop()
    settle(pub, bystander, 1, others)
    settle(pub, bystander, 2, others)
    m = j.metrics()
    rep.figure("dropped as slow consumers after", f"{dropped:.1f} s" if dropped is not None else "never")
    rep.figure("jugglite_slow_consumers_total", m.get("jugglite_slow_consumers_total"))
    rep.figure("the others: p99 while the readers were stopped", f"{bystander.tag(1)['p99_ms']:.1f} ms")
    rep.figure("the others: lost", lost(pub, bystander, 1, others) + lost(pub, bystander, 2, others))
    rep.check(f"all {victims} stopped streams dropped and counted",
              m.get("jugglite_slow_consumers_total") == victims)
    rep.check("the others lost nothing", pub.expected(1) > 0 and lost(pub, bystander, 1, others) == 0
              and lost(pub, bystander, 2, others) == 0)
    rep.check("none of the others closed", bystander.last["closed"] == 0)
    victim.resume_reading()
    wait_for(lambda: victim.last.get("closed", 0) >= victims, 20, 0.2)
    rep.check("the stopped side sees its streams closed once it reads again",
              victim.last.get("closed") == victims)
    victim.end()
    bystander.end()


def overload(rep, scale):
    # scripts/bench's saturation scenario sustains about 800K deliveries/s on this 2-core
    # machine; the burst asks ten times that of the full run's 10K streams. (With 512-byte
    # messages no reader on these cores keeps up with the bytes, and every stream is dropped
    # as a slow consumer, as --max-pending says it should be; that case is not this one.)
    n = scale(10_000, 1_000)
    normal, burst_rate, size = 20, 800, 64
    seconds = scale(30, 5)
    rep.section(f"Overload: {burst_rate} msg/s of {size} B to {n} streams for {seconds} s "
                f"({burst_rate * n / 1e6:g}M deliveries/s; scripts/bench saturation: about 0.8M/s)",
                "every missing delivery has a counted cause, RSS stays bounded, the backlog drains, "
                "and then every message reaches every stream still open, with the p99 of before the "
                "burst (within 2x, judged in the full run only)")
    redis = Redis()
    j = Jugglite(redis)
    w = Watcher(j.port, n, 3600, path="/stream?channel=burst")
    w.wait_connected()
    pub = Publisher(redis, channel="burst", rate=normal)
    run_phase(pub, 1, 5)
    settle(pub, w, 1, n)
    base_p99 = w.tag(1)["p99_ms"]
    rss0 = j.rss()
    pub.rate, pub.size = burst_rate, size
    pub.tag = 2
    peak = rss0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        peak = max(peak, j.rss())
        time.sleep(0.2)
    pub.rate, pub.size, pub.tag = normal, 64, GAP
    end = time.monotonic()

    def drained():
        nonlocal peak
        peak = max(peak, j.rss())
        return w.tag(2)["frames"] >= pub.expected(2) * w.last["open"]
    wait_for(drained, 180, 0.5)
    drain_s = time.monotonic() - end
    run_phase(pub, 4, 5)
    pub.stop()
    still_open = w.last["open"]
    settle(pub, w, 4, still_open)
    m = j.metrics()
    drops = {k: v for k, v in m.items() if k.startswith("jugglite_messages_dropped_total{")}
    slow = m.get("jugglite_slow_consumers_total", 0)
    burst_expected = pub.expected(2) * n
    missing = burst_expected - w.tag(2)["frames"]
    rep.figure("p99 before the burst", f"{base_p99:.1f} ms")
    rep.figure("messages published in the burst", pub.expected(2))
    rep.figure("deliveries during the burst", f"{w.tag(2)['frames']}/{burst_expected}")
    rep.figure("streams dropped as slow consumers", slow)
    rep.figure("messages dropped, by reason", ", ".join(f"{k.split('=')[1][1:-2]} {v:.0f}" for k, v in drops.items()))
    rep.figure("RSS before / peak", f"{rss0 / MiB:.1f} / {peak / MiB:.1f} MiB")
    rep.figure("backlog drained after the burst in", f"{drain_s:.1f} s")
    rep.figure("streams open after the burst", still_open)
    rep.figure("p99 after the burst (once drained)", f"{w.tag(4)['p99_ms']:.1f} ms")
    rep.figure("lost after the burst", lost(pub, w, 4, still_open))
    rep.check("every delivery missing in the burst has a counted cause (a drop or a slow consumer)",
              missing <= 0 or slow + sum(drops.values()) > 0)
    rep.check("the streams closed are the slow consumers counted", n - still_open == slow)
    # Bounded: frames are shared by every stream they go to, and each stream's queue is
    # capped by --max-pending.
    rep.check("peak RSS within 512 MiB of the start", peak - rss0 <= 512 * MiB)
    rep.check("after the burst every message reached every open stream",
              still_open > 0 and pub.expected(4) > 0 and lost(pub, w, 4, still_open) == 0)
    if scale(True, False):
        rep.check("p99 after the burst within 2x of before", w.tag(4)["p99_ms"] <= 2 * max(base_p99, 1))
    w.end()


def drain(rep, scale):
    n = scale(100_000, 3_000)
    rate = 20_000
    rep.section(f"Drain: SIGTERM with {n} streams (--drain-rate {rate}, --drain-seconds 5)",
                "/readyz turns 503 first, no second sees more than the rate of closes (10% slack for "
                "the load generator's one-second sampling), every stream is closed, and jugglite "
                "exits 0 within --drain-seconds and its 2 s of final closes")
    redis = Redis()
    j = Jugglite(redis, "--max-conns", max(n + 1000, 100_000))
    w = Watcher(j.port, n, 3600, path="/stream?channel=drain", sources=16, ramp=25_000)
    connected = w.wait_connected(120)
    time.sleep(2)
    start = time.monotonic()
    j.signal(signal.SIGTERM)
    t503 = wait_for(lambda: j.status("/readyz") in (503, None), 5, 0.01)
    wait_for(lambda: w.last.get("closed", 0) >= connected, 30, 0.1)
    try:
        code = j.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - start
    time.sleep(1.1)  # one more status line
    closes = [(t, s["closed"]) for t, s in w.history if t >= start - 1]
    per_second = [b[1] - a[1] for a, b in zip(closes, closes[1:])]
    busiest = max(per_second) if per_second else 0
    rep.figure("streams", connected)
    rep.figure("/readyz 503 after SIGTERM", f"{t503 * 1000:.0f} ms" if t503 is not None else "never")
    rep.figure("closes per second (load generator's samples)", " ".join(str(x) for x in per_second if x))
    rep.figure("exit", f"status {code} after {took:.1f} s")
    rep.check("/readyz turns 503", t503 is not None)
    rep.check(f"every stream closed ({w.last.get('closed')}/{connected})", w.last.get("closed") == connected)
    rep.check(f"no second with more than {rate * 1.1:.0f} closes", busiest <= rate * 1.1)
    rep.check("exits 0 within --drain-seconds + 2 s", code == 0 and took <= 7.5)
    w.end()


SCENARIOS = {
    "redis": lambda rep, scale, full: redis_faults(rep, scale),
    "slowloris": slowloris,
    "rst": lambda rep, scale, full: rst_storm(rep, scale),
    "stopped": lambda rep, scale, full: stopped_readers(rep, scale),
    "overload": lambda rep, scale, full: overload(rep, scale),
    "drain": lambda rep, scale, full: drain(rep, scale),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="small scale, behaviour checks only")
    ap.add_argument("--out", help="write the figures as markdown here")
    ap.add_argument("scenarios", nargs="*", choices=[[]] + list(SCENARIOS), default=[])
    args = ap.parse_args()
    full = not args.short

    def scale(full_value, short_value):
        return full_value if full else short_value

    rep = Report()
    for name in args.scenarios or list(SCENARIOS):
        try:
            SCENARIOS[name](rep, scale, full)
        except Exception as e:  # a scenario that could not run is a failure, not a skip
            rep.sections.append({"title": name, "condition": "", "rows": [], "checks": []})
            rep.check(f"ran to the end ({type(e).__name__}: {e})", False)
        stop_all()
    if args.out:
        with open(args.out, "w") as f:
            f.write(rep.markdown(f"# Chaos run ({'short' if args.short else 'full'}), "
                                 f"{time.strftime('%Y-%m-%d %H:%M')}, work dir {WORK}"))
    print()
    if rep.failed:
        print("chaos: FAILED\n  " + "\n  ".join(rep.failed))
        return 1
    print("chaos: all scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
