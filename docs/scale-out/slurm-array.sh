#!/bin/bash
# Four calibration shards as a Slurm job array, then the merge as a job that starts once all four succeeded.
# sbatch slurm-array.sh   (from the folder holding model.onnx and images/)
#SBATCH --job-name=trt-calib
#SBATCH --array=1-4
#SBATCH --cpus-per-task=8
#SBATCH --mem=4G
#SBATCH --output=trt-calib-%A_%a.log
set -euo pipefail

MODEL=model.onnx
DATA=images
OUT=calib-cache

# The first task queues the merge behind the whole array (afterok: every task must succeed).
if [ "$SLURM_ARRAY_TASK_ID" = "$SLURM_ARRAY_TASK_MIN" ]; then
  sbatch --job-name=trt-calib-merge --dependency="afterok:$SLURM_ARRAY_JOB_ID" --output="trt-calib-merge-%j.log" \
    --wrap "trt-calib merge $OUT/model.stats.*of4.msgpack --model $MODEL --algo entropy2 --trt-version 10.3.0 --out-dir $OUT"
fi

# --shard auto: shard SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1 of SLURM_ARRAY_TASK_COUNT (--array=0-3 works too).
trt-calib calibrate --model "$MODEL" --data "$DATA" --preset imagenet --shard auto --out-dir "$OUT"
