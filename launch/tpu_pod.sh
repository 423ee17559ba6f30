#!/usr/bin/env bash
# Runs the launcher on every worker of a Cloud TPU pod slice (one process per worker; JAX finds the
# coordinator and the process ids itself, R2RANK_DISTRIBUTED=1).
# Install on every worker first: pip install -e '.[tpu]' (libtpu, same jax/jaxlib pins).
#   TPU=my-v5e-32 ZONE=us-west4-a REPO=~/r2rank_jax launch/tpu_pod.sh --config=configs/qwen2_5_3b.py \
#       --workdir=/mnt/shared/run --mesh=fsdp:32 sft
# The workdir must be shared by the workers (a Filestore/NFS mount or a gcsfuse bucket). Run
# `prepare` and `synthesize` first (once, any single machine); `sft` and `rl` run multi-host, `eval` is
# not multi-host yet (docs/multihost.md).
set -euo pipefail
: "${TPU:?set TPU=name of the TPU VM}" "${ZONE:?set ZONE}" "${REPO:?set REPO=checkout path on the workers}"
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd $REPO && R2RANK_DISTRIBUTED=1 ${PYTHON:-python} -m r2rank_jax.launch$args"
