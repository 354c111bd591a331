#!/usr/bin/env bash
# How Cairn scales with cores: the same steps pinned to 2, 4, 8 and all of
# this machine's cores (taskset), one table row per core count.
#
# Usage: bench/cores.sh [--doc]
#
# Steps, each the median of CAIRN_BENCH_ROUNDS (default 3) rounds with a
# fresh datastore: a tree's full backup, an image's full backup, the same
# image backed up remotely (`cairn serve` and the client pinned to the
# same cores, HTTPS on loopback), a restore of the tree into tmpfs, and
# `verify --all`; then the image backed up remotely with the server on
# cores of its own (n + n cores, where the machine has them), against a
# local backup on the client's n. The tree backup's per-thread CPU seconds (`backup -v`)
# are kept too: the reader's, the walk's, the directory-listing threads', the read-ahead pool's, the
# chunk-boundary scanners' and the workers'; and the restore's (`restore -v`): its own thread's and its
# writers'. Everything lives in /dev/shm.
#
# Corpus: CAIRN_BENCH_TREE, else the Linux source tree when
# /usr/src/linux-source-6.1.tar.xz is there, else a copy of /usr/share
# and /usr/lib; the image is 768 MiB of a tar of the tree then 256 MiB of
# random bytes. The binary: CAIRN (a path), else a release build made
# here. --doc rewrites the marked section of docs/benchmarks.md.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DOC=$ROOT/docs/benchmarks.md
WORK=${CAIRN_BENCH_DIR:-/dev/shm/cairn-bench-cores}
ROUNDS=${CAIRN_BENCH_ROUNDS:-3}
PORT=${CAIRN_BENCH_PORT:-18520}
WRITE_DOC=0
[[ ${1:-} == --doc ]] && WRITE_DOC=1

say() { printf '[cores %s] %s\n' "$(date +%T)" "$*" >&2; }
trap 'say "a step failed; its output: $WORK/last.out, $WORK/last.err"' ERR
SERVER=
stop_server() { if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; fi; }
trap stop_server EXIT

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
cairn_binary
make_corpus
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
TREE_FILES=$(find "$TREE" -type f | wc -l)
IMAGE_BYTES=$(stat -c %s "$IMAGE")
NPROC=$(nproc)

# The value of FIELD="x" in the last line of backup -v's log matching WHAT.
field() { sed 's/\x1b\[[0-9;]*m//g' "$WORK/last.err" | grep "$1" | tail -1 | grep -oE "(^| )$2=\"[0-9.]*\"" | tr -dc '0-9.'; }
declare -A CPU

# remote_image KEY CLIENT_CPUS SERVER_CPUS: a fresh `cairn serve` pinned
# to SERVER_CPUS, and the image backed up to it over HTTPS by a client
# pinned to CLIENT_CPUS (timed under KEY).
remote_image() {
    local key=$1 client=$2 server=$3 token fp=
    "$CAIRN" --datastore "$WORK/server" init >/dev/null
    token=$("$CAIRN" --datastore "$WORK/server" token create --name bench --group host/image 2>/dev/null | tail -1)
    rm -f "$WORK/serve.log"
    taskset -c "$server" "$CAIRN" --datastore "$WORK/server" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 200); do
        fp=$(sed -n 's/^certificate fingerprint (SHA-256): //p' "$WORK/serve.log" 2>/dev/null)
        [[ -n $fp ]] && break
        sleep 0.1
    done
    timed "$key" taskset -c "$client" "$CAIRN" backup --server "https://127.0.0.1:$PORT" --token "$token" \
        --fingerprint "$fp" "$IMAGE" --group host/image
    stop_server
    rm -rf "$WORK/server"
}

counts=()
for n in 2 4 8 "$NPROC"; do
    ((n <= NPROC)) || continue
    [[ " ${counts[*]} " == *" $n "* ]] || counts+=("$n")
done
say "corpus: $TREE_FILES files, $TREE_BYTES bytes; image $IMAGE_BYTES bytes; cores: ${counts[*]} of $NPROC"
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null
cat "$IMAGE" >/dev/null

for n in "${counts[@]}"; do
    pin=(taskset -c "0-$((n - 1))")
    for round in $(seq 1 "$ROUNDS"); do
        say "$n cores, round $round of $ROUNDS"
        rm -rf "$WORK/ds" "$WORK/server" "$WORK/out"
        "$CAIRN" --datastore "$WORK/ds" init >/dev/null
        timed "$n tree" "${pin[@]}" "$CAIRN" --datastore "$WORK/ds" -v backup "$TREE" --group host/tree --time 2026-12-01T00:00:00Z
        for f in reader_cpu_s workers_cpu_s; do CPU["$n $f"]="${CPU["$n $f"]:-} $(field 'pipeline stages' $f)"; done
        CPU["$n walk_cpu_s"]="${CPU["$n walk_cpu_s"]:-} $(field 'tree read-ahead' walk_cpu_s)"
        CPU["$n list_cpu_s"]="${CPU["$n list_cpu_s"]:-} $(field 'directory listings' cpu_s)"
        CPU["$n ahead_cpu_s"]="${CPU["$n ahead_cpu_s"]:-} $(field 'tree read-ahead' cpu_s)"
        CPU["$n scan_cpu_s"]="${CPU["$n scan_cpu_s"]:-} $(field 'chunk boundaries' cpu_s)"
        timed "$n image" "${pin[@]}" "$CAIRN" --datastore "$WORK/ds" backup "$IMAGE" --group host/image --time 2026-12-01T00:00:00Z
        timed "$n restore" "${pin[@]}" "$CAIRN" --datastore "$WORK/ds" -v restore host/tree/2026-12-01T00:00:00Z "$WORK/out"
        CPU["$n restore_reader"]="${CPU["$n restore_reader"]:-} $(field 'restore stages' reader_cpu_s)"
        CPU["$n restore_writers"]="${CPU["$n restore_writers"]:-} $(field 'restore stages' writers_cpu_s)"
        rm -rf "$WORK/out"
        timed "$n verify" "${pin[@]}" "$CAIRN" --datastore "$WORK/ds" verify --all
        rm -rf "$WORK/ds"
        remote_image "$n remote" "0-$((n - 1))" "0-$((n - 1))"
    done
done

# The image again with the server on cores of its own: the local backup
# and the client on cores 0..n-1, the server on n..2n-1, for each n whose
# 2n cores the machine has. Sharing cores, a remote backup loses what the
# server spends; apart, what is left is the remote path's own cost.
apart=()
for n in 1 2 4 8; do ((2 * n <= NPROC)) && apart+=("$n"); done
for n in "${apart[@]}"; do
    for round in $(seq 1 "$ROUNDS"); do
        say "the server apart: $n + $n cores, round $round of $ROUNDS"
        rm -rf "$WORK/ds"
        "$CAIRN" --datastore "$WORK/ds" init >/dev/null
        timed "$n apart local" taskset -c "0-$((n - 1))" "$CAIRN" --datastore "$WORK/ds" backup "$IMAGE" \
            --group host/image --time 2026-12-01T00:00:00Z
        rm -rf "$WORK/ds"
        remote_image "$n apart remote" "0-$((n - 1))" "$n-$((2 * n - 1))"
    done
done

table=$(
    echo "Corpus: a tree of $TREE_FILES files, $((TREE_BYTES / 1000000)) MB; an image of $((IMAGE_BYTES / 1000000)) MB. $NPROC cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); medians of $ROUNDS rounds; \`bench/cores.sh\`, $(date -u +%F)."
    echo
    echo "| cores | tree full backup | image full backup | image remote/local | tree restore (tmpfs) | verify --all | tree backup CPU s: reader / walk / listings / read-ahead / boundaries / workers | tree restore CPU s: restore thread / writers |"
    echo "|---:|---:|---:|---:|---:|---:|---|---|"
    for n in "${counts[@]}"; do
        m() { median "${SECS["$n $1"]}"; }
        c() { median "${CPU["$n $1"]}"; }
        python3 - "$n" "$(m tree)" "$(m image)" "$(m remote)" "$(m restore)" "$(m verify)" \
            "$(c reader_cpu_s)" "$(c walk_cpu_s)" "$(c list_cpu_s)" "$(c ahead_cpu_s)" "$(c scan_cpu_s)" "$(c workers_cpu_s)" "$TREE_BYTES" "$IMAGE_BYTES" \
            "$(c restore_reader)" "$(c restore_writers)" <<'PY'
import sys
n, tree, image, remote, restore, verify, rc, wc, lc, ac, sc, kc, tb, ib, rr, rw = sys.argv[1:]
tree, image, remote, restore, verify = map(float, (tree, image, remote, restore, verify))
tb, ib = int(tb), int(ib)
mbs = lambda b, s: f"{b / s / 1e6:,.0f} MB/s"
print(f"| {n} | {mbs(tb, tree)} | {mbs(ib, image)} | {image / remote:.2f} | {mbs(tb, restore)} | {verify:.2f} s | {float(rc):.2f} / {float(wc):.2f} / {float(lc):.2f} / {float(ac):.2f} / {float(sc):.2f} / {float(kc):.2f} | {float(rr):.2f} / {float(rw):.2f} |")
PY
    done
    if ((${#apart[@]})); then
        echo
        echo "The image with the server on cores of its own (the local backup and the client on the first cores, the server on as many others):"
        echo
        echo "| client cores | server cores | image local | image remote | remote/local |"
        echo "|---:|---:|---:|---:|---:|"
        for n in "${apart[@]}"; do
            l=$(median "${SECS["$n apart local"]}")
            r=$(median "${SECS["$n apart remote"]}")
            python3 -c "print(f'| $n | $n | {$l:.2f} s | {$r:.2f} s | {$l / $r:.2f} |')"
        done
    fi
)
echo
echo "$table"
if ((WRITE_DOC)); then
    write_doc_section "$DOC" cores "Scaling with cores (\`bench/cores.sh\`)" "$table"
    say "wrote the table into $DOC"
fi
