#!/usr/bin/env bash
# Peak memory against the cores a backup or a restore is sized for.
#
# Usage: bench/memory.sh [--doc]
#
# For each N of CAIRN_BENCH_THREADS (default "1 2 4 8 16 32"): a full
# backup of the tree and of the image with `backup --threads N` (every
# per-core pool sized as for N cores, whatever this machine has), then a
# restore of each into tmpfs with `restore --threads N`. Each step runs
# CAIRN_BENCH_ROUNDS times (default 3) with a fresh datastore; the table
# gives the highest peak RSS of the rounds (GNU time's %M; Debian package
# `time`) and the median seconds. On a machine with fewer cores than N the
# seconds are those of N threads sharing the cores, not of N cores: the
# memory is what the pools hold. Everything lives in /dev/shm.
#
# Corpus and binary as in bench/cores.sh (CAIRN_BENCH_TREE, CAIRN).
# --doc rewrites the marked section of docs/benchmarks.md.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DOC=$ROOT/docs/benchmarks.md
WORK=${CAIRN_BENCH_DIR:-/dev/shm/cairn-bench-cores}
ROUNDS=${CAIRN_BENCH_ROUNDS:-3}
read -ra THREADS <<<"${CAIRN_BENCH_THREADS:-1 2 4 8 16 32}"
WRITE_DOC=0
[[ ${1:-} == --doc ]] && WRITE_DOC=1

say() { printf '[memory %s] %s\n' "$(date +%T)" "$*" >&2; }
trap 'say "a step failed; its output: $WORK/last.out, $WORK/last.err"' ERR
[[ -x /usr/bin/time ]] || { say "needs GNU time (/usr/bin/time, Debian package time)"; exit 2; }

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
cairn_binary
make_corpus
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null
cat "$IMAGE" >/dev/null

# measured KEY COMMAND...: run it under GNU time; add its seconds to
# SECS[KEY] and its peak RSS (KiB) to PEAK[KEY].
declare -A PEAK
measured() {
    local key=$1
    shift
    sync
    /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >"$WORK/last.out" 2>"$WORK/last.err"
    read -r secs kib <"$WORK/time.out"
    SECS[$key]="${SECS[$key]:-} $secs"
    PEAK[$key]="${PEAK[$key]:-} $kib"
}

for n in "${THREADS[@]}"; do
    for round in $(seq 1 "$ROUNDS"); do
        say "$n threads, round $round of $ROUNDS"
        rm -rf "$WORK/ds" "$WORK/out"
        "$CAIRN" --datastore "$WORK/ds" init >/dev/null
        for what in tree image; do
            src=$TREE
            [[ $what == image ]] && src=$IMAGE
            measured "$n $what backup" "$CAIRN" --datastore "$WORK/ds" backup "$src" --group "host/$what" \
                --time 2026-12-01T00:00:00Z --threads "$n"
            measured "$n $what restore" "$CAIRN" --datastore "$WORK/ds" restore \
                "host/$what/2026-12-01T00:00:00Z" "$WORK/out" --threads "$n"
            rm -rf "$WORK/out"
        done
        rm -rf "$WORK/ds"
    done
done

table=$(
    echo "Corpus: a tree of $(find "$TREE" -type f | wc -l) files, $(($(du -sb "$TREE" | cut -f1) / 1000000)) MB; an image of $(($(stat -c %s "$IMAGE") / 1000000)) MB. $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); highest peak RSS and median seconds of $ROUNDS rounds; \`bench/memory.sh\`, $(date -u +%F)."
    echo
    echo "| \`--threads\` | tree backup | image backup | tree restore | image restore |"
    echo "|---:|---:|---:|---:|---:|"
    for n in "${THREADS[@]}"; do
        row="| $n |"
        for step in "tree backup" "image backup" "tree restore" "image restore"; do
            # shellcheck disable=SC2086
            peak=$(python3 -c "import sys; print(max(int(x) for x in sys.argv[1:]) // 1024)" ${PEAK["$n $step"]})
            row="$row $peak MiB, $(median "${SECS["$n $step"]}") s |"
        done
        echo "$row"
    done
)
echo
echo "$table"
if ((WRITE_DOC)); then
    write_doc_section "$DOC" memory "Peak memory against threads (\`bench/memory.sh\`)" "$table"
    say "wrote the table into $DOC"
fi
