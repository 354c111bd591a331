#!/usr/bin/env bash
# Volume write and read throughput, beside `tar -cf` of the same tree.
#
# Usage: bench/volume.sh [ROUNDS]   (default 3)
#
# Corpora: the Linux 6.1 source tree (Debian `linux-source-6.1`) and a
# 2 GiB image (1 GiB of a tar of that tree, 512 MiB random, 512 MiB zeros).
# Everything lives in tmpfs (/dev/shm): the corpus, the datastore, the
# volume files and what is read back, so the figures are Cairn's, not the
# disk's. Steps, each timed ROUNDS times (median printed, every round
# shown): `cairn volume write` of the tree snapshot and of the image
# snapshot into a new volume file; `cairn volume ls` of each volume
# (reads every block and checks its CRC); `cairn volume extract` of each
# (reads, checks every file's digest, restores); and `tar -cf` of the tree
# into a tar file, and `tar -xf` of it, for comparison. MB/s are of the
# snapshot's logical bytes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${1:-3}
WORK=${CAIRN_BENCH_DIR:-/dev/shm/cairn-bench-volume}
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz
CAIRN=${CAIRN:-$ROOT/target/release/cairn}

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
[[ -f $KERNEL_TARBALL ]] || { echo "needs $KERNEL_TARBALL: apt-get install linux-source-6.1" >&2; exit 2; }
[[ -x $CAIRN ]] || { echo "needs $CAIRN: cargo build --release -p cairn" >&2; exit 2; }

mkdir -p "$WORK/corpus"
TREE=$WORK/corpus/linux-source-6.1
IMAGE=$WORK/corpus/disk.img
if [[ ! -f $WORK/corpus/.ok ]]; then
    say "extracting the kernel tree"
    rm -rf "$WORK/corpus"/*
    tar -C "$WORK/corpus" -xJf "$KERNEL_TARBALL"
    say "making the image"
    { tar -C "$WORK/corpus" -cf - linux-source-6.1 | head -c $((1 << 30)) || true
      head -c $((512 << 20)) /dev/urandom; head -c $((512 << 20)) /dev/zero; } >"$IMAGE"
    touch "$WORK/corpus/.ok"
fi
DS=$WORK/ds
if [[ ! -f $DS/.bench-ok ]]; then
    rm -rf "$DS"
    say "backing up the corpus"
    "$CAIRN" --datastore "$DS" backup "$TREE" --group host/linux --time 2026-01-01T00:00:00Z >/dev/null
    "$CAIRN" --datastore "$DS" backup "$IMAGE" --group vm/disk --time 2026-01-01T00:00:00Z >/dev/null
    touch "$DS/.bench-ok"
fi
TREE_ID=host/linux/2026-01-01T00:00:00Z
IMAGE_ID=vm/disk/2026-01-01T00:00:00Z
TREE_BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)
IMAGE_BYTES=$(stat -c %s "$IMAGE")

now() { date +%s.%N; }
declare -A SECS BYTES
timed() { # LABEL BYTES COMMAND...
    local label=$1 bytes=$2 t0 t1
    shift 2
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    SECS[$label]="${SECS[$label]:-} $(python3 -c "print(f'{$t1 - $t0:.3f}')")"
    BYTES[$label]=$bytes
}
show() {
    python3 - "$1" "${BYTES[$1]}" ${SECS[$1]} <<'PY'
import statistics, sys
label, size, rounds = sys.argv[1], int(sys.argv[2]), [float(x) for x in sys.argv[3:]]
m = statistics.median(rounds)
print(f"{label:<24} {m:7.2f} s {size / m / 1e6:8.1f} MB/s   rounds: {' '.join(f'{r:.2f}' for r in rounds)}")
PY
}

V=$WORK/vols
for r in $(seq "$ROUNDS"); do
    say "round $r"
    rm -rf "$V" "$WORK/out"* "$WORK/tree.tar"
    mkdir -p "$V"
    timed "write tree" "$TREE_BYTES" "$CAIRN" --datastore "$DS" volume write "$TREE_ID" --to "$V/Tree"
    timed "write image" "$IMAGE_BYTES" "$CAIRN" --datastore "$DS" volume write "$IMAGE_ID" --to "$V/Image"
    timed "ls tree" "$TREE_BYTES" "$CAIRN" volume ls "$V/Tree"
    timed "ls image" "$IMAGE_BYTES" "$CAIRN" volume ls "$V/Image"
    timed "extract tree" "$TREE_BYTES" "$CAIRN" volume extract "$V/Tree" "$WORK/out-tree"
    timed "extract image" "$IMAGE_BYTES" "$CAIRN" volume extract "$V/Image" "$WORK/out-image"
    timed "tar -cf tree" "$TREE_BYTES" tar -C "$WORK/corpus" -cf "$WORK/tree.tar" linux-source-6.1
    mkdir -p "$WORK/out-tar"
    timed "tar -xf tree" "$TREE_BYTES" tar -C "$WORK/out-tar" -xf "$WORK/tree.tar"
done
cmp "$IMAGE" "$WORK/out-image/disk.img"
diff -r "$TREE" "$WORK/out-tree" >/dev/null
echo "cairn $("$CAIRN" --version | cut -d' ' -f2), $(nproc) cores; tree $TREE_BYTES bytes, image $IMAGE_BYTES bytes; volume files $(du -sb "$V/Tree" | cut -f1) and $(du -sb "$V/Image" | cut -f1) bytes"
for label in "write tree" "write image" "ls tree" "ls image" "extract tree" "extract image" "tar -cf tree" "tar -xf tree"; do
    show "$label"
done
