#!/usr/bin/env bash
# Remote against local backup throughput, on the same corpus in the same run.
#
# Usage: bench/remote.sh
#
# Corpora: the Linux 6.1 source tree (Debian `linux-source-6.1`, ~1.4 GB in
# ~78,000 files) and a 1 GiB image file (768 MiB of a tar of that tree,
# then 256 MiB of random bytes). For each: a first and an unchanged second
# backup into a local datastore (`cairn backup`), the same into a server's
# datastore over HTTPS on loopback (`cairn serve` + `cairn backup --server`
# with a backup-client token and the pinned fingerprint), and a restore
# each way (into tmpfs when it has room). Sources are read once before
# timing so both sides read from the page cache; `sync` runs before each
# timed step. Client and server share this machine's cores, as they would
# on a loopback test. Prints one line per step and the remote/local ratio
# of throughput. Work files live in bench/scratch/remote/ (or
# $CAIRN_BENCH_DIR/remote).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${CAIRN_BENCH_DIR:-$HERE/scratch}/remote
PORT=${CAIRN_BENCH_PORT:-18418}
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

[[ -f $KERNEL_TARBALL ]] || { echo "needs $KERNEL_TARBALL: apt-get install linux-source-6.1" >&2; exit 2; }

say "building cairn (release)"
(cd "$ROOT" && cargo build --release --quiet -p cairn)
CAIRN=$ROOT/target/release/cairn

mkdir -p "$WORK/corpus"
TREE=$WORK/corpus/linux-source-6.1
IMAGE=$WORK/corpus/disk.img
if [[ ! -f $WORK/corpus/.ok ]]; then
    say "extracting the kernel tree"
    rm -rf "$WORK/corpus"/*
    tar -C "$WORK/corpus" -xJf "$KERNEL_TARBALL"
    say "making the image"
    { tar -C "$WORK/corpus" -cf - linux-source-6.1 | head -c $((768 << 20)) || true; head -c $((256 << 20)) /dev/urandom; } >"$IMAGE"
    touch "$WORK/corpus/.ok"
fi

# Restores go to memory (tmpfs) when it has room: on this machine the
# disk's writeback otherwise decides the time, whichever side restores.
OUT=$WORK/out
[[ -d /dev/shm ]] && (( $(df -B1 --output=avail /dev/shm | tail -1) > 4 << 30 )) && OUT=/dev/shm/cairn-bench-out
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
# timed_bytes LABEL BYTES COMMAND...: `timed`, remembering the bytes too.
declare -A BYTES
timed_bytes() {
    BYTES[$1]=$2
    local label=$1
    shift 2
    timed "$label" "$@"
}
show() { # label: median seconds and MB/s, and every round
    local m
    m=$(median "${SECS[$1]}")
    python3 -c "print(f'{\"$1\":<26} {$m:7.2f} s {${BYTES[$1]}/$m/1e6:8.1f} MB/s   rounds:${SECS[$1]}')"
}
ratio() { # remote-label local-label: throughput ratio remote/local of the medians
    python3 -c "print(f'{\"$1 / $2\":<48} {$(median "${SECS[$2]}") / $(median "${SECS[$1]}"):.2f}')"
}

say "warming the page cache"
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null
cat "$IMAGE" >/dev/null
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
IMAGE_BYTES=$(stat -c %s "$IMAGE")

echo "corpus: kernel tree $TREE_BYTES bytes, image $IMAGE_BYTES bytes; $(nproc) cores; restores into $OUT"
ROUNDS=${CAIRN_BENCH_ROUNDS:-3}
for round in $(seq 1 "$ROUNDS"); do
    say "round $round of $ROUNDS"
    rm -rf "$WORK/local" "$WORK/server" "$OUT"
    "$CAIRN" --datastore "$WORK/local" init >/dev/null
    "$CAIRN" --datastore "$WORK/server" init >/dev/null
    TOKEN=$("$CAIRN" --datastore "$WORK/server" token create --name bench --group host/tree --group host/image | tail -1)
    "$CAIRN" --datastore "$WORK/server" serve --listen 127.0.0.1:$PORT >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do grep -q "fingerprint" "$WORK/serve.log" && break; sleep 0.1; done
    FP=$(sed -n 's/^certificate fingerprint (SHA-256): //p' "$WORK/serve.log")
    REMOTE=(--server "https://127.0.0.1:$PORT" --token "$TOKEN" --fingerprint "$FP")
    timed_bytes "tree local first" "$TREE_BYTES" "$CAIRN" --datastore "$WORK/local" backup "$TREE" --group host/tree --time 2026-12-01T00:00:00Z
    # A backup-client token cannot date a snapshot (the server refuses a
    # time more than 300 s from its clock): the server dates the remote ones.
    timed_bytes "tree remote first" "$TREE_BYTES" "$CAIRN" backup "${REMOTE[@]}" "$TREE" --group host/tree
    timed_bytes "tree local unchanged" "$TREE_BYTES" "$CAIRN" --datastore "$WORK/local" backup "$TREE" --group host/tree --time 2026-12-01T01:00:00Z
    timed_bytes "tree remote unchanged" "$TREE_BYTES" "$CAIRN" backup "${REMOTE[@]}" "$TREE" --group host/tree
    timed_bytes "image local first" "$IMAGE_BYTES" "$CAIRN" --datastore "$WORK/local" backup "$IMAGE" --group host/image --time 2026-12-01T00:00:00Z
    timed_bytes "image remote first" "$IMAGE_BYTES" "$CAIRN" backup "${REMOTE[@]}" "$IMAGE" --group host/image
    # One restore's output at a time: a second 1.3 GB tree beside the
    # first in memory made whichever restore ran second 2-3 times slower.
    timed_bytes "tree local restore" "$TREE_BYTES" "$CAIRN" --datastore "$WORK/local" restore host/tree/2026-12-01T01:00:00Z "$OUT/local"
    want=$(tree_digest "$OUT/local"); rm -rf "$OUT"
    newest=$("$CAIRN" --datastore "$WORK/server" snapshots host/tree --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
    timed_bytes "tree remote restore" "$TREE_BYTES" "$CAIRN" restore "${REMOTE[@]}" "$newest" "$OUT/remote"
    got=$(tree_digest "$OUT/remote"); rm -rf "$OUT"
    if [[ $want != "$got" ]]; then echo "the restored trees differ" >&2; exit 1; fi
    kill $SERVER; wait $SERVER 2>/dev/null || true
done
echo
for label in "tree local first" "tree remote first" "tree local unchanged" "tree remote unchanged" \
    "image local first" "image remote first" "tree local restore" "tree remote restore"; do
    show "$label"
done
echo
echo "throughput remote/local, medians of $ROUNDS rounds (goal: at least 0.80 for backups)"
ratio "tree remote first" "tree local first"
ratio "tree remote unchanged" "tree local unchanged"
ratio "image remote first" "image local first"
ratio "tree remote restore" "tree local restore"
