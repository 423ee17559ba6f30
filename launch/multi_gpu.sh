#!/usr/bin/env bash
# One process per GPU host (all of a host's GPUs in that process); run this on every host.
# Install on every host first: pip install -e '.[cuda]' (the CUDA 12 plugin, same jax/jaxlib pins).
#   COORDINATOR=host0:12355 NUM_HOSTS=2 HOST_ID=0 launch/multi_gpu.sh --config=configs/qwen2_5_3b.py \
#       --workdir=/shared/run --mesh=fsdp:16 sft
# The workdir must be on storage every host sees (NFS, GCS via gcsfuse, ...): Orbax writes the
# checkpoints collectively there and the hosts read the prepared benchmark and teacher corpus from it.
# Under SLURM or Open MPI leave NUM_HOSTS/HOST_ID unset (R2RANK_DISTRIBUTED=1): JAX detects them.
set -euo pipefail
: "${COORDINATOR:?set COORDINATOR=host:port of host 0}"
export R2RANK_COORDINATOR_ADDRESS="$COORDINATOR"
if [[ -n "${NUM_HOSTS:-}" || -n "${HOST_ID:-}" ]]; then
  export R2RANK_NUM_PROCESSES="${NUM_HOSTS:?set NUM_HOSTS with HOST_ID}" R2RANK_PROCESS_ID="${HOST_ID:?set HOST_ID with NUM_HOSTS}"
else
  export R2RANK_DISTRIBUTED=1
fi
exec "${PYTHON:-python}" -m r2rank_jax.launch "$@"
