#!/usr/bin/env bash
# Runs one loadgen scenario against each jugglite binary given, back to back in one run, so
# that two builds can be compared (the delivery issue's capacity, fan-out and shutdown
# figures). Each run starts its own redis-server and jugglite on loopback and stops them.
#
#   benchmarks/compare_builds.sh capacity NEW [OLD ...]  --max-conns 120000, 2 shards, 120K streams
#   benchmarks/compare_builds.sh fanout   NEW [OLD ...]  20K streams, 20 msg/s for 10 s
#   benchmarks/compare_builds.sh sigterm  NEW [OLD ...]  50K streams x 64 channels, then SIGTERM
#
# Needs root for scripts/tune-linux.sh (port range, somaxconn), and build/release's loadgen.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: compare_builds.sh capacity|fanout|sigterm BINARY...}
shift
loadgen=build/release/benchmarks/loadgen
[[ -x $loadgen ]] || bash scripts/build release >/dev/null
bash scripts/tune-linux.sh >/dev/null
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The sum of the samples named (or labelled) as any of $2...: the builds compared may
# predate the Prometheus names, so callers give the old name and the new series.
metric() {
  local port=$1; shift
  curl -s -m 2 "http://127.0.0.1:$port/metrics" | awk -v names="$*" '
    BEGIN { split(names, want, " ") }
    !/^#/ { for (i in want) if ($1 == want[i] || index($1, want[i] "{") == 1) { s += $2; hit = 1 } }
    END { if (hit) print s }' || true
}

run() {
  local bin=$1 label=$2 rport port pid
  rport=$(free_port); port=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile /dev/null >/dev/null
  sleep 0.3
  local args=(--address 127.0.0.1 --port "$port" --shards 2 --redis "redis://127.0.0.1:$rport")
  case $scenario in
    capacity) args+=(--max-conns 120000) ;;
    sigterm) args+=(--max-conns 60000) ;;
  esac
  "$bin" "${args[@]}" >"/tmp/compare-$label.log" 2>&1 &
  pid=$!
  sleep 1
  grep -hE "capacity|warn" "/tmp/compare-$label.log" | sed "s/^/$label: /" || true
  case $scenario in
    capacity)
      "$loadgen" --port "$port" --conns 120000 --workers 8 --sources 16 --ramp 10000 \
        --pub-port "$rport" --rates 1 --messages 1 --step-seconds 1 --hold 3 --pids "$pid" \
        --label "$label" 2>&1 | grep -E "^$label|step"
      echo "$label: connections_refused_capacity=$(metric "$port" connections_refused_capacity 'jugglite_connections_refused_total{reason="capacity"}')" \
        "connections_rejected=$(metric "$port" connections_rejected jugglite_connections_rejected_total)"
      ;;
    fanout)
      "$loadgen" --port "$port" --conns 20000 --workers 4 --sources 8 --ramp 10000 \
        --pub-port "$rport" --rates 20 --step-seconds 10 --hold 2 --pids "$pid" \
        --label "$label" 2>&1 | grep -E "^$label|step"
      ;;
    sigterm)
      local chs lg n t0 t1 rc
      chs=$(python3 -c 'print(",".join(f"t{k}" for k in range(64)))')
      "$loadgen" --port "$port" --conns 50000 --workers 4 --sources 8 --ramp 20000 \
        --path "/stream?channel=$chs" --pub-port "$rport" --rates 1 --messages 1 \
        --step-seconds 1 --hold 60 --settle 2 >/dev/null 2>&1 &
      lg=$!
      # Until all are open, or the count stops growing (a build that can't hold them all).
      local last=-1 same=0
      for _ in $(seq 120); do
        n=$(metric "$port" connections_open jugglite_connections_open); [[ "$n" == 50000 ]] && break
        if [[ "$n" == "$last" ]]; then same=$((same + 1)); else same=0; fi
        [[ $same -ge 6 ]] && break
        last=$n; sleep 0.5
      done
      t0=$(date +%s.%N); kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?; t1=$(date +%s.%N)
      echo "$label: ${n:-?} streams open; SIGTERM -> exit $rc after $(python3 -c "print(f'{$t1-$t0:.2f}')") s"
      grep -h "still closing" "/tmp/compare-$label.log" | sed "s/^/$label: /" || true
      kill "$lg" 2>/dev/null || true; wait "$lg" 2>/dev/null || true
      ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
}

i=0
for bin in "$@"; do
  run "$bin" "build$i"
  i=$((i + 1))
done
bash scripts/tune-linux.sh --restore >/dev/null || true
