#!/bin/bash
# One `accelerate launch` per node for a training stage; started by srun on every node (see
# launch/slurm.sbatch): slurm_node.sh <accelerate config> -m selfreward.train.dpo --run-dir R --round t
# Node 0 of the allocation is the rendezvous host; GPUS_PER_NODE (default 8) GPUs per node.
set -euo pipefail
CONFIG=$1
shift
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS=${GPUS_PER_NODE:-8}
exec python -m accelerate.commands.launch --config_file "$CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes $((SLURM_NNODES * GPUS)) \
    --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN_HOST" --main_process_port "${MAIN_PORT:-29500}" \
    "$@"
