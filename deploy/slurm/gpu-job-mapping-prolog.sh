#!/bin/bash
# Slurm Prolog: records the job's GPUs in the job mapping directory that
# system-info-exporter (--collector.hpc.job-mapping-dir) and dcgm-exporter
# (--hpc-job-mapping-dir) read: a file per GPU named by its NVML index (the
# exporters' `gpu` label), one job id per line. gpu-job-mapping-epilog.sh
# removes the job again. See docs/deployment.md, "Slurm".
#
# Slurm names the job's GPUs in its own numbering, which need not be NVML's:
#  - CUDA_VISIBLE_DEVICES holds GPU UUIDs (Slurm 25.11 and later with
#    AutoDetect=nvml): mapped exactly, through nvidia-smi's index and uuid.
#  - Otherwise SLURM_JOB_GPUS holds Slurm's GPU indexes. With AutoDetect=nvml
#    Slurm orders the GPUs as NVML does, by PCI bus id, so Slurm's N is NVML's
#    N (GPU_NUMBERING=nvml). With a hand-written gres.conf that lists
#    File=/dev/nvidia0, /dev/nvidia1, ... in order, Slurm's N is /dev/nvidiaN,
#    whose NVML index is found through its PCI bus id (GPU_NUMBERING=minor).
#    The default, auto, uses a GPU's number when both readings agree on this
#    node, and skips the GPU, saying why, when they do not.
# MIG devices (MIG-... UUIDs) are skipped: their file names need the GPU
# instance id, which nvidia-smi does not print per MIG UUID.
#
# It never fails the job (a failing Prolog drains the node): what goes wrong
# is written to stderr, and it exits 0.

set -u
umask 022
dir=${GPU_JOB_MAPPING_DIR:-/run/gpu-job-mapping}
numbering=${GPU_NUMBERING:-auto}
proc_gpus=${NVIDIA_PROC_GPUS:-/proc/driver/nvidia/gpus}
job=${SLURM_JOB_ID:-}

say() { echo "gpu-job-mapping prolog, job ${job:-?}: $*" >&2; }

[ -n "$job" ] || { say "no SLURM_JOB_ID"; exit 0; }
case $numbering in auto | nvml | minor) ;; *)
    say "GPU_NUMBERING must be auto, nvml or minor, not '$numbering'"
    exit 0
    ;;
esac
# Slurm's ids of the job's GPUs: UUIDs where Slurm gives them.
case ${CUDA_VISIBLE_DEVICES:-} in
*GPU-* | *MIG-*) ids=$CUDA_VISIBLE_DEVICES ;;
*) ids=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}} ;;
esac
[ -n "$ids" ] || exit 0 # a job without GPUs

# A PCI bus id as both nvidia-smi (00000000:3B:00.0) and the driver's
# /proc directories (0000:3b:00.0) can be compared: lower case, 4-digit domain.
bus_key() {
    local bus=${1,,}
    echo "${bus: -12}"
}

declare -A index_of_uuid index_of_bus bus_of_minor nvml_indexes
if ! gpus=$(timeout 60 nvidia-smi --query-gpu=index,pci.bus_id,uuid --format=csv,noheader); then
    say "nvidia-smi failed; GPUs not recorded"
    exit 0
fi
while IFS=', ' read -r index bus uuid; do
    [ -n "$index" ] || continue
    nvml_indexes[$index]=1
    index_of_uuid[$uuid]=$index
    index_of_bus[$(bus_key "$bus")]=$index
done <<<"$gpus"
for information in "$proc_gpus"/*/information; do
    [ -f "$information" ] || continue
    minor=$(sed -n 's/^Device Minor:[[:space:]]*\([0-9]*\).*/\1/p' "$information")
    bus=$(basename "$(dirname "$information")")
    [ -n "$minor" ] && bus_of_minor[$minor]=$(bus_key "$bus")
done

# The NVML index of Slurm's GPU id $1, or nothing (and why) if unknown.
nvml_index() {
    local id=$1 by_nvml by_minor index
    case $id in
    GPU-*)
        [ -n "${index_of_uuid[$id]:-}" ] || say "no GPU $id on this node"
        echo "${index_of_uuid[$id]:-}"
        return
        ;;
    MIG-*)
        say "MIG device $id not recorded: MIG devices are not mapped by this script"
        return
        ;;
    '' | *[!0-9]*)
        say "GPU id '$id' is neither a UUID nor a number"
        return
        ;;
    esac
    by_nvml=${nvml_indexes[$id]:+$id}
    by_minor=
    if [ -n "${bus_of_minor[$id]:-}" ]; then
        by_minor=${index_of_bus[${bus_of_minor[$id]}]:-}
    fi
    case $numbering in
    nvml) index=$by_nvml ;;
    minor) index=$by_minor ;;
    # Where only one reading names a GPU of this node, it is that one.
    auto) if [ -z "$by_minor" ] || [ "$by_nvml" = "$by_minor" ]; then
        index=$by_nvml
    elif [ -z "$by_nvml" ]; then
        index=$by_minor
    else
        say "Slurm GPU $id is NVML GPU $by_nvml if Slurm numbers GPUs as NVML does (AutoDetect=nvml), but /dev/nvidia$id is NVML GPU $by_minor: set GPU_NUMBERING=nvml or minor; not recorded"
        return
    fi ;;
    esac
    [ -n "$index" ] || say "Slurm GPU $id is no GPU of this node (GPU_NUMBERING=$numbering); not recorded"
    echo "$index"
}

# The lines of file $1, if any, each with its newline: other prologs may
# write the last one without.
lines_of() {
    [ -s "$1" ] || return 0
    cat "$1"
    [ -z "$(tail -c 1 "$1")" ] || echo
}

mkdir -p "$dir" || {
    say "cannot create $dir"
    exit 0
}
# One prolog or epilog at a time rewrites the files; each file is replaced
# whole (rename), so a reader never sees half of one.
exec 9>"$dir/.lock"
flock -w 30 9 || say "could not lock $dir/.lock; writing anyway"
IFS=',' read -ra slurm_ids <<<"$ids"
for id in "${slurm_ids[@]}"; do
    index=$(nvml_index "$id")
    [ -n "$index" ] || continue
    file=$dir/$index
    grep -qxF -- "$job" "$file" 2>/dev/null && continue
    partial=$dir/.$index.$$
    if ! { lines_of "$file"; printf '%s\n' "$job"; } >"$partial" || ! mv -f "$partial" "$file"; then
        say "cannot write $file"
        rm -f "$partial"
    fi
done
exit 0
