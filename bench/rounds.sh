#!/usr/bin/env bash
# Side-by-side rounds: a tree's full backup by one or more Cairn builds and
# by restic, taking turns, with the order rotated each round; prints each
# round's wall and CPU seconds and, per build, the median of its ratios to
# restic and to the first build within the same rounds.
#
# Usage: bench/rounds.sh [--rounds N] [--step full|rerun] [--no-restic]
#                        [LABEL=BINARY ...]
#
# On a machine whose speed drifts from minute to minute (a shared virtual
# machine), one run of each tool compares two different machines; rounds
# in turn, compared within each round, do not. Everything lives in
# /dev/shm: datastores, restic's repository and its cache (the corpus too,
# unless CAIRN_BENCH_TREE names one elsewhere).
#
# --step full    a full backup into a fresh datastore (the default)
# --step rerun   an unchanged re-run: each build and restic back the tree
#                up once, then the rounds back it up again, unchanged
# LABEL=BINARY   a Cairn build to run (repeatable; the first is the one the
#                others are compared with); without any, a release build
#                made here, as `cairn`.
#
# Corpus: CAIRN_BENCH_TREE, else the Linux source tree (as bench/cores.sh
# makes it). Needs `time` and, unless --no-restic, restic (Debian packages).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${CAIRN_BENCH_DIR:-/dev/shm/cairn-bench-rounds}
ROUNDS=8
STEP=full
RESTIC=1
LABELS=()
BINS=()

say() { printf '[rounds %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "$*"; exit 2; }
usage() { sed -n '2,/^set -E/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a number"; ROUNDS=$2; shift ;;
        --step) [[ $# -ge 2 ]] || die "--step needs full or rerun"; STEP=$2; shift ;;
        --no-restic) RESTIC=0 ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *=*)
            label=${1%%=*} bin=${1#*=}
            [[ $label =~ ^[A-Za-z0-9._-]+$ && $label != restic ]] ||
                die "a build's label is letters, digits, '.', '_' or '-', and not 'restic': $label"
            for l in "${LABELS[@]}"; do [[ $l != "$label" ]] || die "two builds are labelled $label"; done
            [[ -x $bin ]] || die "$bin is not an executable"
            LABELS+=("$label")
            BINS+=("$(realpath "$bin")")
            ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds takes a positive number"
[[ $STEP == full || $STEP == rerun ]] || die "--step takes full or rerun"
if [[ $RESTIC == 1 ]] && ! command -v restic >/dev/null; then
    die "restic is not installed (apt-get install restic), or give --no-restic"
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed (apt-get install time)"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
if [[ ${#BINS[@]} -eq 0 ]]; then
    cairn_binary
    LABELS=(cairn)
    BINS=("$CAIRN")
fi
mkdir -p "$WORK"
# The datastores live in memory: none is left behind, however this ends.
trap 'rm -rf "$WORK"/store* "$WORK/restic-cache"' EXIT
make_corpus tree
say "corpus: $TREE ($(find "$TREE" -type f | wc -l) files, $(du -sh "$TREE" | cut -f1))"

export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
TOOLS=("${LABELS[@]}")
[[ $RESTIC == 1 ]] && TOOLS+=(restic)

# The last tool is restic when it runs.
is_restic() { [[ $RESTIC == 1 && $1 -eq ${#LABELS[@]} ]]; }

# fresh INDEX: an empty datastore (or repository) for tool INDEX.
fresh() {
    rm -rf "$WORK/store$1" "$RESTIC_CACHE_DIR"
    if is_restic "$1"; then
        restic -r "$WORK/store$1" init >"$WORK/last.out" 2>"$WORK/last.err" ||
            die "restic init failed: $WORK/last.err"
    else
        "${BINS[$1]}" --datastore "$WORK/store$1" init >/dev/null
    fi
}

# backup INDEX: one backup of the tree by tool INDEX, timed (wall and CPU
# seconds into $WORK/wall and $WORK/cpu).
backup() {
    local cmd t0 t1
    if is_restic "$1"; then
        cmd=(restic -r "$WORK/store$1" backup "$TREE")
    else
        cmd=("${BINS[$1]}" --datastore "$WORK/store$1" backup "$TREE" --group host/bench)
    fi
    t0=$(now)
    /usr/bin/time -f '%U %S' -o "$WORK/cpu" "${cmd[@]}" >"$WORK/last.out" 2>"$WORK/last.err" ||
        die "${TOOLS[$1]} failed: $WORK/last.err"
    t1=$(now)
    python3 -c "print(f'{$t1 - $t0:.3f}')" >"$WORK/wall"
}

if [[ $STEP == rerun ]]; then
    for i in "${!TOOLS[@]}"; do
        say "first backup by ${TOOLS[$i]}"
        fresh "$i"
        backup "$i"
    done
fi

RESULTS=$WORK/rounds.txt
: >"$RESULTS"
n=${#TOOLS[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < n; k++)); do
        i=$(((r + k) % n))
        [[ $STEP == full ]] && fresh "$i"
        sync
        backup "$i"
        printf '%d %s %s %s\n' "$r" "${TOOLS[$i]}" "$(cat "$WORK/wall")" \
            "$(awk '{printf "%.2f", $1 + $2}' "$WORK/cpu")" >>"$RESULTS"
    done
    say "round $((r + 1)) of $ROUNDS done"
done

python3 - "$RESULTS" "$STEP" "${TOOLS[@]}" <<'PY'
import collections, statistics, sys
path, step, *tools = sys.argv[1:]
runs = collections.defaultdict(dict)
for line in open(path):
    r, tool, wall, cpu = line.split()
    runs[int(r)][tool] = (float(wall), float(cpu))
print(f"{step}: wall seconds (user + sys CPU seconds), {len(runs)} rounds\n")
print("| round | " + " | ".join(tools) + " |")
print("|---:|" + "---|" * len(tools))
for r in sorted(runs):
    print(f"| {r + 1} | " + " | ".join(f"{runs[r][t][0]:.2f} s ({runs[r][t][1]:.2f})" for t in tools) + " |")
print()
first = tools[0]
others = [t for t in tools if t != "restic"]
def ratios(a, b):
    return sorted(runs[r][a][0] / runs[r][b][0] for r in runs)
for t in others:
    walls = [runs[r][t][0] for r in runs]
    used = [runs[r][t][1] / runs[r][t][0] for r in runs]
    line = f"{t}: median wall {statistics.median(walls):.3f} s, cores used {statistics.median(used):.2f}"
    if "restic" in tools:
        x = ratios(t, "restic")
        line += f"; / restic median {statistics.median(x):.3f} ({x[0]:.3f}-{x[-1]:.3f})"
    if t != first:
        x = ratios(t, first)
        line += f"; / {first} median {statistics.median(x):.3f} ({x[0]:.3f}-{x[-1]:.3f})"
    print(line)
PY
