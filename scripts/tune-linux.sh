#!/usr/bin/env bash
# Applies the kernel settings that 10K-100K connections need, printing each change, and
# saves the old values so that `scripts/tune-linux.sh --restore` puts them back.
#   scripts/tune-linux.sh            apply
#   scripts/tune-linux.sh --restore  restore the values saved by the last apply
#   scripts/tune-linux.sh --show     print current values only
set -euo pipefail

state=${JUGGLITE_TUNE_STATE:-/var/tmp/jugglite-sysctl.saved}

# name=value: why
settings=(
  "net.ipv4.ip_local_port_range=1024 65535"   # ephemeral ports for load generators and proxies
  "net.core.somaxconn=65535"                  # listen backlog cap: bursts of connects
  "net.ipv4.tcp_max_syn_backlog=65535"        # half-open connections during a connect burst
  "net.core.netdev_max_backlog=65535"         # loopback packets queued per CPU
  "net.ipv4.tcp_tw_reuse=1"                   # reuse TIME_WAIT ports for new outgoing connects
  "net.ipv4.tcp_migrate_req=1"                # a closing SO_REUSEPORT listener hands its queue on
  "fs.file-max=2097152"                       # system-wide open files (nginx, load generators)
  "fs.nr_open=1048576"                        # per-process ceiling for RLIMIT_NOFILE
  "net.ipv4.tcp_mem=786432 1048576 1572864"   # TCP memory in pages (~3/4/6 GiB): 100K sockets
  "net.ipv4.tcp_rmem=4096 16384 6291456"      # small default receive buffer per socket
  "net.ipv4.tcp_wmem=4096 16384 4194304"      # small default send buffer per socket
)

case "${1:-}" in
  --show)
    for s in "${settings[@]}"; do
      name=${s%%=*}
      printf '%s = %s\n' "$name" "$(sysctl -n "$name" 2>/dev/null | tr '\t' ' ')"
    done
    ;;
  --restore)
    [[ -f "$state" ]] || { echo "nothing saved in $state" >&2; exit 1; }
    while IFS='=' read -r name value; do
      sysctl -q -w "$name=$value" >/dev/null && printf 'restored %s = %s\n' "$name" "$value"
    done <"$state"
    rm -f "$state"
    ;;
  "")
    : >"$state.new"
    for s in "${settings[@]}"; do
      name=${s%%=*}
      value=${s#*=}
      old=$(sysctl -n "$name" 2>/dev/null | tr '\t' ' ') || { echo "skip $name (not available)"; continue; }
      printf '%s=%s\n' "$name" "$old" >>"$state.new"
      if [[ "$old" == "$value" ]]; then
        printf '%s = %s (unchanged)\n' "$name" "$value"
      elif [[ "$old" =~ ^[0-9]+$ && "$value" =~ ^[0-9]+$ && "$name" != *tw_reuse* ]] && ((old > value)); then
        printf '%s = %s (already above %s, unchanged)\n' "$name" "$old" "$value"
      elif sysctl -q -w "$name=$value" >/dev/null 2>&1; then
        printf '%s: %s -> %s\n' "$name" "$old" "$value"
      else
        printf '%s: could not set (kept %s)\n' "$name" "$old"
      fi
    done
    # Keep the oldest saved state across repeated applies.
    if [[ -f "$state" ]]; then rm -f "$state.new"; else mv "$state.new" "$state"; fi
    echo "saved previous values in $state (restore with: $0 --restore)"
    ;;
  *) echo "usage: $0 [--restore|--show]" >&2; exit 2 ;;
esac
