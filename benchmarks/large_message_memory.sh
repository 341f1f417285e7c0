#!/usr/bin/env bash
# Memory of jugglite around one large JSON message: RSS before, the peak (VmHWM) while it is
# parsed, framed and sent to one subscriber, and RSS 2 s after. Catches buffers that keep
# the size of the largest message ever seen (issue: a 20 MB message left 72 MB held).
#
#   benchmarks/large_message_memory.sh [path/to/jugglite]     default: build/release/jugglite
#   SIZE_MB=20 REPEAT=3 benchmarks/large_message_memory.sh    message size, messages in a row
#   EXTRA_ARGS="--shards 2" benchmarks/large_message_memory.sh
#   KEEP=1 benchmarks/large_message_memory.sh                 keep the logs in /tmp
#
# --max-message-bytes and --max-pending are raised to fit the message, so that builds
# which dropped a subscriber for one large message can be measured the same way.
#
# The payload is a JSON object whose "event" and "id" members come after a large array, so
# the whole document must be read to find them. Needs redis-server, redis-cli, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-build/release/jugglite}
size_mb=${SIZE_MB:-20}
repeat=${REPEAT:-1}
[[ -x $binary ]] || { echo "no executable at $binary" >&2; exit 1; }

work=$(mktemp -d /tmp/jugglite-memory-XXXXXX)
redis_pid=""
server_pid=""
curl_pid=""
cleanup() {
  for pid in $curl_pid $server_pid $redis_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $curl_pid $server_pid $redis_pid; do wait "$pid" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Polls `$@` every 50 ms for up to 30 s.
wait_for() {
  for _ in $(seq 600); do "$@" && return 0; sleep 0.05; done
  echo "timed out waiting for: $*" >&2
  return 1
}

# True once the subscriber has received $want bytes; exits if it was disconnected.
delivered() {
  [[ $(stat -c %s "$work/stream.out") -ge $want ]] && return 0
  kill -0 "$curl_pid" 2>/dev/null || { echo "the subscriber was disconnected" >&2; exit 1; }
  return 1
}

kib() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$server_pid/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for redis-cli -p "$redis_port" ping >/dev/null 2>&1

port=$(free_port)
# shellcheck disable=SC2086
"$binary" --address 127.0.0.1 --port "$port" --redis "redis://127.0.0.1:$redis_port" \
  --max-message-bytes $(((size_mb + 1) * 1024 * 1024)) --max-pending $(((size_mb + 1) * 1024 * 1024)) \
  ${EXTRA_ARGS:-} >"$work/jugglite.log" 2>&1 &
server_pid=$!
wait_for grep -qs "accepting on" "$work/jugglite.log"

channel=memory
curl -sN "http://127.0.0.1:$port/stream?channel=$channel" >"$work/stream.out" &
curl_pid=$!
wait_for grep -qs "registered to channels" "$work/stream.out"
wait_for test "$(redis-cli -p "$redis_port" pubsub numsub "$channel" | tail -n1)" = 1

python3 - "$work/payload.json" "$size_mb" <<'EOF'
import sys
path, size = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
tail = '],"event":"big","id":42}'
parts, n, i = ['{"numbers":['], 13, 0
while n < size - len(tail) - 24:
    s = str(i * 7919 % 1000003) + ','
    parts.append(s)
    n += len(s)
    i += 1
parts.append('0' + tail)
open(path, 'w').write(''.join(parts))
EOF
payload_bytes=$(stat -c %s "$work/payload.json")
frame_bytes=$((payload_bytes + 26))  # "event: big\n" "id: 42\n" "data: " payload "\n\n"

sleep 1
echo "jugglite: $binary (pid $server_pid), payload: $payload_bytes bytes of JSON, $repeat message(s)"
printf '%-22s %10s %10s\n' "" "VmRSS MiB" "VmHWM MiB"
printf '%-22s %10s %10s\n' "before" "$(mib "$(kib VmRSS)")" "$(mib "$(kib VmHWM)")"
head_bytes=$(stat -c %s "$work/stream.out")
for n in $(seq "$repeat"); do
  redis-cli -p "$redis_port" -x publish "$channel" <"$work/payload.json" >/dev/null
  want=$((head_bytes + n * frame_bytes))
  wait_for delivered
  printf '%-22s %10s %10s\n' "message $n delivered" "$(mib "$(kib VmRSS)")" "$(mib "$(kib VmHWM)")"
done
sleep 2
printf '%-22s %10s %10s\n' "2 s after" "$(mib "$(kib VmRSS)")" "$(mib "$(kib VmHWM)")"

got=$(tail -c "$frame_bytes" "$work/stream.out" | head -c 24)
[[ $got == $'event: big\nid: 42\ndata: ' ]] || { echo "unexpected frame start: $got" >&2; exit 1; }
