#!/bin/bash
# Slurm Epilog: removes the job from every file of the job mapping directory
# that gpu-job-mapping-prolog.sh wrote, and the files left without a job (a
# missing or empty file means no job). It needs no GPU ids, so it also
# cleans up after a prolog that ran with other settings. It never fails the
# job: problems go to stderr, and it exits 0.

set -u
umask 022
dir=${GPU_JOB_MAPPING_DIR:-/run/gpu-job-mapping}
job=${SLURM_JOB_ID:-}

say() { echo "gpu-job-mapping epilog, job ${job:-?}: $*" >&2; }

[ -n "$job" ] || { say "no SLURM_JOB_ID"; exit 0; }
[ -d "$dir" ] || exit 0
exec 9>"$dir/.lock"
flock -w 30 9 || say "could not lock $dir/.lock; removing anyway"
for file in "$dir"/*; do
    [ -f "$file" ] || continue
    grep -qxF -- "$job" "$file" || continue
    partial=$dir/.${file##*/}.$$
    grep -vxF -- "$job" "$file" >"$partial"
    if [ -s "$partial" ]; then
        mv -f "$partial" "$file" || say "cannot write $file"
    else
        rm -f "$partial" "$file" || say "cannot remove $file"
    fi
done
exit 0
