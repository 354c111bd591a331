#!/usr/bin/env bash
# Tape job throughput on a virtual library in tmpfs.
#
# Usage: bench/tape.sh [ROUNDS]   (default 3)
#
# Uses the corpus and datastore `bench/volume.sh` prepares (the Linux 6.1
# source tree and a 2 GiB image, backed up into a datastore in /dev/shm;
# run it first). Each round makes a new virtual library (2 drives, 1 GiB
# cartridges, so the image spans three) and a pool, then times
# `cairn tape backup` of the tree snapshot and of the image snapshot, and
# `cairn tape restore` of each into tmpfs. MB/s are of the snapshots'
# logical bytes; each backup's report says how long its drive was held
# and how much of that the drive spent in calls (the rest: reserved but
# idle, waiting for data from the datastore).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${1:-3}
WORK=${CAIRN_BENCH_DIR:-/dev/shm/cairn-bench-volume}
CAIRN=${CAIRN:-$ROOT/target/release/cairn}
[[ -f $WORK/ds/.bench-ok ]] || { echo "run bench/volume.sh first (it prepares $WORK/ds)" >&2; exit 2; }
# A copy of the datastore, so the media catalog starts empty each run.
DS=$WORK/ds-tape
rm -rf "$DS"
cp -a "$WORK/ds" "$DS"
rm -f "$DS/catalog.redb"   # rebuilt from the datastore on open, with no media catalog
trap 'rm -rf "$DS" "$WORK/library" "$WORK"/tape-out-*' EXIT
[[ -x $CAIRN ]] || { echo "needs $CAIRN: cargo build --release -p cairn" >&2; exit 2; }
TREE_ID=host/linux/2026-01-01T00:00:00Z
IMAGE_ID=vm/disk/2026-01-01T00:00:00Z
TREE_BYTES=$(du -sb --apparent-size "$WORK/corpus/linux-source-6.1" | cut -f1)
IMAGE_BYTES=$(stat -c %s "$WORK/corpus/disk.img")

# Before each timed step: drop the kernel's dentry, inode and page caches
# (tmpfs contents stay). Without it, an image restore right after the
# tree restore (78,579 new files) took 4.2-5.1 s instead of 1.2-1.4 s, all
# of it system time reclaiming those caches (measured: user 0.4 s both
# ways; sys 4.7 s against 0.8-1.0 s after drop_caches).
settle() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
LIB=$WORK/library
results=$WORK/tape-results.txt
: >"$results"
for r in $(seq "$ROUNDS"); do
    say "round $r"
    rm -rf "$LIB" "$WORK"/tape-out-*
    # The media catalog lives in the datastore's catalog: each round has its
    # own pool and barcodes, so earlier rounds' cartridges are not in the way.
    prefix=$(printf "\\$(printf '%03o' $((64 + r)))")
    "$CAIRN" tape library create "$LIB" --drives 2 --slots 12 --capacity 1G --prefix "B${prefix}K" >/dev/null
    "$CAIRN" --datastore "$DS" tape pool add "bench$r" --allocation new-set >/dev/null
    for what in tree image; do
        id=$TREE_ID; bytes=$TREE_BYTES
        [[ $what == image ]] && { id=$IMAGE_ID; bytes=$IMAGE_BYTES; }
        settle
        t0=$(now)
        "$CAIRN" --datastore "$DS" tape --library "$LIB" backup "$id" --pool "bench$r" --json >"$WORK/tape-report.json"
        t1=$(now)
        python3 - "$what" "$bytes" "$t0" "$t1" "$WORK/tape-report.json" >>"$results" <<'PY'
import json, sys
what, size, t0, t1, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
secs = t1 - t0
held, busy = r["drive_held_secs"], r["drive_busy_secs"]
print(f"backup {what} {secs:.3f} {size / secs / 1e6:.1f} {held:.3f} {busy:.3f} {len(r['media'])}")
PY
        settle
        t0=$(now)
        "$CAIRN" --datastore "$DS" tape --library "$LIB" restore "$id" "$WORK/tape-out-$what" --pool "bench$r" >/dev/null
        t1=$(now)
        python3 -c "import sys; s=float(sys.argv[3])-float(sys.argv[2]); print(f'restore {sys.argv[1]} {s:.3f} {int(sys.argv[4])/s/1e6:.1f}')" \
            "$what" "$t0" "$t1" "$bytes" >>"$results"
    done
    cmp "$WORK/corpus/disk.img" "$WORK/tape-out-image/disk.img"
    diff -r "$WORK/corpus/linux-source-6.1" "$WORK/tape-out-tree" >/dev/null
done
echo "cairn $("$CAIRN" --version | cut -d' ' -f2), $(nproc) cores; tree $TREE_BYTES bytes, image $IMAGE_BYTES bytes"
echo "step seconds MB/s [drive held s, drive busy s, cartridges]"
sort "$results" | python3 -c '
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in sys.stdin:
    f = line.split()
    rows[(f[0], f[1])].append(f[2:])
for (step, what), rs in sorted(rows.items()):
    secs = [float(r[0]) for r in rs]
    m = statistics.median(secs)
    extra = ""
    if step == "backup":
        held = statistics.median(float(r[2]) for r in rs)
        busy = statistics.median(float(r[3]) for r in rs)
        extra = f"  drive held {held:.2f} s, busy {busy:.2f} s, idle {held - busy:.2f} s, {rs[0][4]} cartridges"
    rounds = " ".join(f"{s:.2f}" for s in secs)
    print(f"{step} {what}: {m:.2f} s, {statistics.median(float(r[1]) for r in rs):.1f} MB/s (rounds: {rounds}){extra}")
'
