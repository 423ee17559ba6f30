#!/usr/bin/env bash
# N jax.distributed processes on this machine (CPU, 127.0.0.1): the multi-host code path without a cluster.
#   launch/local_cpu.sh WORKDIR [NUM_PROCESSES=2] [DEVICES_PER_PROCESS=2] [STAGE=sft] [-- EXTRA launcher args]
# e.g. launch/local_cpu.sh /tmp/mh 2 2 sft -- --config=configs/debug_cpu.py   (--mesh=auto unless EXTRA has --mesh)
# WORKDIR must already hold `prepare` and `synthesize` outputs for `sft` (run them once without this script).
# Process i logs to WORKDIR/process_i.log; the script exits non-zero when any process does.
set -euo pipefail
workdir=${1:?usage: launch/local_cpu.sh WORKDIR [NUM_PROCESSES] [DEVICES_PER_PROCESS] [STAGE] [-- args]}
n=${2:-2}; devices=${3:-2}; stage=${4:-sft}
shift $(( $# < 4 ? $# : 4 )); [[ "${1:-}" == "--" ]] && shift
extra=("$@"); [[ ${#extra[@]} -eq 0 ]] && extra=(--config=configs/debug_cpu.py)
python=${PYTHON:-python}
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$workdir"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu \
  R2RANK_COORDINATOR_ADDRESS="127.0.0.1:$port" R2RANK_NUM_PROCESSES="$n" R2RANK_PROCESS_ID="$i" \
    "$python" -m r2rank_jax.launch --mesh=auto "${extra[@]}" --workdir="$workdir" "$stage" \
    > "$workdir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
trap - EXIT INT TERM
exit $status
