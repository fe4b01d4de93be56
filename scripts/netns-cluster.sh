#!/usr/bin/env bash
# A multi-host Dask cluster on one Linux machine, for real: each "host" is a network
# namespace with its own address on a private bridge, so scheduler, workers and client talk
# over real TCP between different IPs, exactly as on separate machines sharing a filesystem.
#
#   sudo scripts/netns-cluster.sh make stack              # runs on the head (scheduler) host
#   sudo NETNS_WORKERS=3 scripts/netns-cluster.sh bash -c 'python -m stages.cluster status'
#
# Layout (NETNS_SUBNET=10.77.0): <prefix>-br holds bridge br0; <prefix>-h0 = 10.77.0.1 runs
# `dask scheduler` (port 8786) and the command, with DASK_SCHEDULER=tcp://10.77.0.1:8786;
# <prefix>-h1.. = 10.77.0.2.. run one `dask worker` each. Processes are started by
# `python -m stages.cluster up` (pid files and logs under $NETNS_DIR/h<i>). Nothing touches
# the machine's own network namespace. Everything is torn down on exit (trap), and the
# command's exit status is returned. Needs root and iproute2 (`ip`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
N_WORKERS=${NETNS_WORKERS:-2}
SUBNET=${NETNS_SUBNET:-10.77.0}
PORT=${NETNS_PORT:-8786}
PREFIX=${NETNS_PREFIX:-dnc$$}
DIR=${NETNS_DIR:-$ROOT/build/netns/$PREFIX}
TIMEOUT=${NETNS_TIMEOUT:-120}

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARGS...]   (run as root; see the header for variables)" >&2
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "error: $0 needs root to create network namespaces" >&2
  exit 2
fi
command -v ip >/dev/null || { echo "error: iproute2 \`ip\` not found (apt-get install iproute2)" >&2; exit 2; }
[[ $N_WORKERS -ge 2 ]] || { echo "error: NETNS_WORKERS must be >= 2" >&2; exit 2; }

BR="$PREFIX-br"
HOSTS=()
for ((i = 0; i <= N_WORKERS; i++)); do HOSTS+=("$PREFIX-h$i"); done
CREATED=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = N_WORKERS; i >= 0; i--)); do
    [[ -d $DIR/h$i ]] && "$PY" -m stages.cluster down --dir "$DIR/h$i" >/dev/null 2>&1 || true
  done
  for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$BR"; CREATED+=("$BR")
ip -n "$BR" link set lo up
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
for i in "${!HOSTS[@]}"; do
  ns=${HOSTS[$i]}
  ip netns add "$ns"; CREATED+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$BR" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$BR" link set "v$i" master br0 up
  ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
done

HEAD=${HOSTS[0]}
ADDRESS="tcp://$SUBNET.1:$PORT"
cd "$ROOT"
mkdir -p "$DIR"
echo "netns-cluster: scheduler $ADDRESS in $HEAD; $N_WORKERS worker host(s); logs in $DIR" >&2
ip netns exec "$HEAD" "$PY" -m stages.cluster up --workers 0 --host "$SUBNET.1" \
  --port "$PORT" --dir "$DIR/h0" --timeout "$TIMEOUT" >/dev/null
for ((i = 1; i <= N_WORKERS; i++)); do
  ip netns exec "${HOSTS[$i]}" "$PY" -m stages.cluster up --scheduler "$ADDRESS" --workers 1 \
    --host "$SUBNET.$((i + 1))" --dir "$DIR/h$i" --timeout "$TIMEOUT" >/dev/null
done

set +e
ip netns exec "$HEAD" env DASK_SCHEDULER="$ADDRESS" PATH="$(dirname "$PY"):$PATH" "$@"
rc=$?
set -e
exit "$rc"
