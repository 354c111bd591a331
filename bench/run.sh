#!/usr/bin/env bash
# Reproducible benchmark of Cairn against restic and borg.
#
# Usage: bench/run.sh [--quick] [--only tree|image] [--tools cairn,restic,borg]
#                     [--fresh] [--no-doc] [--doc] [--restore-on-disk]
#
# Corpora, repositories and logs live in bench/scratch/ (or $CAIRN_BENCH_DIR).
# Raw figures go to results.json there; a full run also rewrites the marked
# section of docs/benchmarks.md. See docs/benchmarks.md for the method.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${CAIRN_BENCH_DIR:-$HERE/scratch}
DOC=$ROOT/docs/benchmarks.md
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz

QUICK=0
ONLY=""
TOOLS="cairn,restic,borg"
WRITE_DOC=auto
FRESH=0
RESTORE_ON_DISK=0

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --quick            smoke run: first 10k files of the tree, 256 MiB image
  --only CORPUS      tree or image (default: both)
  --tools LIST       comma-separated subset of cairn,restic,borg (default: all)
  --fresh            drop figures of earlier runs instead of merging with them
  --restore-on-disk  restore to the work disk instead of a tmpfs (noisier here)
  --no-doc / --doc   do not / do rewrite docs/benchmarks.md (default: only
                     for full runs; quick runs write results-quick.md)
EOF
}

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs an argument"; ONLY=$2; shift ;;
        --only=*) ONLY=${1#*=} ;;
        --tools) [[ $# -ge 2 ]] || die "--tools needs an argument"; TOOLS=$2; shift ;;
        --tools=*) TOOLS=${1#*=} ;;
        --fresh) FRESH=1 ;;
        --restore-on-disk) RESTORE_ON_DISK=1 ;;
        --no-doc) WRITE_DOC=0 ;;
        --doc) WRITE_DOC=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

case $ONLY in
    "") CORPORA=(tree image) ;;
    tree | image) CORPORA=("$ONLY") ;;
    *) die "--only takes tree or image, not '$ONLY'" ;;
esac
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
((${#TOOL_LIST[@]})) || die "--tools is empty"
for t in "${TOOL_LIST[@]}"; do
    case $t in cairn | restic | borg) ;; *) die "unknown tool '$t' (cairn, restic, borg)" ;; esac
done
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
if [[ $WRITE_DOC == auto ]]; then
    if ((QUICK)); then WRITE_DOC=0; else WRITE_DOC=1; fi
fi

# ------------------------------------------------------------ packages ----

ensure_packages() {
    local missing=()
    has_tool restic && ! command -v restic >/dev/null && missing+=(restic)
    has_tool borg && ! command -v borg >/dev/null && missing+=(borgbackup)
    [[ -f $KERNEL_TARBALL ]] || missing+=(linux-source-6.1)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v zstd >/dev/null || missing+=(zstd)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v python3 >/dev/null || missing+=(python3)
    command -v cmp >/dev/null || missing+=(diffutils)
    ((${#missing[@]})) || return 0
    say "installing: ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "need root to install ${missing[*]} (or install them first)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
}

# ------------------------------------------------------------- corpora ----

CORPUS_DIR=$WORK/corpus
FULL_TREE=$CORPUS_DIR/linux-source-6.1

build_full_tree() {
    [[ -f $CORPUS_DIR/.tree-full.ok ]] && return 0
    say "unpacking $KERNEL_TARBALL"
    mkdir -p "$CORPUS_DIR"
    rm -rf "$FULL_TREE"
    tar -C "$CORPUS_DIR" -xJf "$KERNEL_TARBALL"
    [[ -d $FULL_TREE ]] || die "$KERNEL_TARBALL did not unpack to $FULL_TREE"
    touch "$CORPUS_DIR/.tree-full.ok"
}

build_quick_tree() {
    local dir=$CORPUS_DIR/tree-quick
    [[ -f $CORPUS_DIR/.tree-quick.ok ]] && return 0
    say "building the quick tree (first 10000 files of the kernel tree)"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$FULL_TREE" && find . -mindepth 1 \( -type f -o -type l \) -print | LC_ALL=C sort >"$CORPUS_DIR/quick.all")
    head -n 10000 "$CORPUS_DIR/quick.all" >"$CORPUS_DIR/quick.list"
    tar -C "$FULL_TREE" -cf - --no-recursion -T "$CORPUS_DIR/quick.list" | tar -C "$dir" -xf -
    rm -f "$CORPUS_DIR/quick.all" "$CORPUS_DIR/quick.list"
    touch "$CORPUS_DIR/.tree-quick.ok"
}

# build_image NAME SIZE RANDOM_MIB SUBDIR...: an ext4 image made with
# mkfs.ext4 -d from part of the kernel tree plus incompressible files; the
# rest of the file system is zeros, and the image file is fully allocated.
build_image() {
    local name=$1 size=$2 rand_mib=$3
    shift 3
    local img=$CORPUS_DIR/$name.raw src=$CORPUS_DIR/$name.src
    [[ -f $CORPUS_DIR/.$name.ok ]] && return 0
    say "building $img ($size: kernel directories $*, $rand_mib MiB random)"
    rm -rf "$src" "$img" "$img.sparse"
    mkdir -p "$src/linux" "$src/random"
    local d
    for d in "$@"; do
        mkdir -p "$src/linux/$(dirname "$d")"
        cp -a "$FULL_TREE/$d" "$src/linux/$d"
    done
    local i per=$((rand_mib / 8))
    for i in 1 2 3 4 5 6 7 8; do
        python3 "$HERE/bench.py" randfile "$src/random/blob-$i.bin" "$per" "$i"
        touch -d 2025-06-01T00:00:00Z "$src/random/blob-$i.bin"
    done
    local used
    used=$(du -sb "$src" | cut -f1)
    mkfs.ext4 -q -F -L cairnbench -d "$src" "$img.sparse" "$size"
    cp --sparse=never "$img.sparse" "$img"
    rm -rf "$img.sparse" "$src"
    printf '%s\n' "$used" >"$CORPUS_DIR/$name.used"
    touch "$CORPUS_DIR/.$name.ok"
}

# -------------------------------------------------------------- measure ----

# Every timed command appends one JSON line to $MEAS.
emit() { printf '%s\n' "$1" >>"$MEAS"; }
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
fact() { # tool key json-value
    emit "{\"kind\":\"fact\",\"corpus\":\"$CORPUS\",\"tool\":\"$1\",\"key\":\"$2\",\"value\":$3}"
}
corpus_fact() { # key json-value
    emit "{\"kind\":\"corpus\",\"corpus\":\"$CORPUS\",\"key\":\"$1\",\"value\":$2}"
}

declare -A FAILED=()

# measure TOOL OP CMD...: run CMD under GNU time, log its output, record
# wall / user / sys / peak RSS. Returns non-zero if the command failed.
measure() {
    local tool=$1 op=$2
    shift 2
    local log=$LOGS/$CORPUS-$tool-$op tf=$LOGS/.time
    local rc=0 ok=true
    sync
    say "$CORPUS / $tool / $op"
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$log.out" 2>"$log.err" || rc=$?
    # borg exits 1 for warnings (e.g. a file changed while it was read).
    if ((rc != 0)) && ! [[ $tool == borg && $rc == 1 ]]; then ok=false; fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$tf")
    emit "{\"kind\":\"time\",\"corpus\":\"$CORPUS\",\"tool\":\"$tool\",\"op\":\"$op\",\"wall\":$wall,\"user\":$user,\"sys\":$sys,\"rss_kib\":$rss,\"rc\":$rc,\"ok\":$ok}"
    say "    wall ${wall}s cpu $(python3 -c "print(round($user+$sys,2))")s rss $((rss / 1024)) MiB rc $rc"
    if [[ $ok == false ]]; then
        say "    FAILED; last lines of $log.err:"
        tail -n 15 "$log.err" | sed 's/^/        /' >&2
        return 1
    fi
}

# step TOOL OP CMD...: measure unless TOOL already failed on this corpus.
step() {
    local tool=$1 op=$2
    [[ -n ${FAILED[$CORPUS/$tool]:-} ]] && return 0
    measure "$@" || FAILED[$CORPUS/$tool]="$op (see $LOGS/$CORPUS-$tool-$op.err)"
}

# ---------------------------------------------------------- the tools ----

export RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$WORK/cache/restic
export BORG_BASE_DIR=$WORK/cache/borg
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

CAIRN=""
build_cairn() {
    say "building cairn (cargo build --release -p cairn)"
    (cd "$ROOT" && cargo build --release -p cairn) ||
        die "cargo build --release -p cairn failed"
    CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn
    [[ -x $CAIRN ]] || die "$CAIRN was not built"
    local help
    help=$("$CAIRN" --help 2>&1 || true)
    local sub
    for sub in init backup restore verify gc; do
        grep -qw "$sub" <<<"$help" || die "the cairn CLI is not usable yet: '$CAIRN --help' does not list '$sub'.
Run the restic/borg half meanwhile with: $0 --tools restic,borg"
    done
}

repo() { printf '%s/repos/%s/%s' "$WORK" "$CORPUS" "$1"; }

op_init() {
    local tool=$1 r
    r=$(repo "$tool")
    rm -rf "$r"
    mkdir -p "$(dirname "$r")"
    case $tool in
        cairn) step cairn init "$CAIRN" --datastore "$r" init ;;
        restic) step restic init restic -r "$r" init ;;
        borg) step borg init borg init --encryption=none "$r" ;;
    esac
}

op_backup() { # tool op n
    local tool=$1 op=$2 n=$3 r
    r=$(repo "$tool")
    case $tool in
        cairn)
            step cairn "$op" "$CAIRN" --datastore "$r" backup "$SRC" --group host/bench \
                --time "2026-01-01T00:00:0${n}Z"
            if [[ -z ${FAILED[$CORPUS/cairn]:-} ]]; then
                local id
                id=$(grep -v '^[[:space:]]*$' "$LOGS/$CORPUS-cairn-$op.out" | tail -n 1 || true)
                if [[ -z $id ]]; then
                    FAILED[$CORPUS/cairn]="$op printed no snapshot id"
                    say "    cairn backup printed no snapshot id on stdout"
                else
                    CAIRN_SNAPSHOT=$id
                fi
            fi
            ;;
        restic) step restic "$op" restic -r "$r" backup "$SRC" ;;
        borg) step borg "$op" borg create --compression zstd,3 "$r::bench-$n" "$SRC" ;;
    esac
}

# Where a tool puts the restored copy of $SRC below target directory $1.
restored_path() {
    local t=$1 c
    for c in "$t$SRC" "$t/$(basename "$SRC")" "$t"; do
        if [[ $KIND == tree && -d $c && $c != "$t" ]]; then printf '%s' "$c"; return; fi
        if [[ $KIND == image && -f $c ]]; then printf '%s' "$c"; return; fi
    done
    printf '%s' "$t"
}

op_restore() {
    local tool=$1 r t
    r=$(repo "$tool")
    t=$OUT/restore-$tool
    rm -rf "$t" && mkdir -p "$t"
    case $tool in
        cairn)
            local target=$t
            [[ $KIND == image ]] && target=$t/$(basename "$SRC")
            step cairn restore "$CAIRN" --datastore "$r" restore "${CAIRN_SNAPSHOT:-none}" "$target"
            ;;
        restic) step restic restore restic -r "$r" restore latest --target "$t" ;;
        borg) step borg restore sh -c 'cd "$1" && exec borg extract "$2"' sh "$t" "$r::bench-3" ;;
    esac
    sync
    if [[ -z ${FAILED[$CORPUS/$tool]:-} ]]; then
        local got ok=false
        got=$(restored_path "$t")
        if [[ $KIND == tree ]]; then
            diff -r --no-dereference -q "$SRC" "$got" >"$LOGS/$CORPUS-$tool-restore.diff" 2>&1 && ok=true
        else
            cmp "$SRC" "$got" >"$LOGS/$CORPUS-$tool-restore.diff" 2>&1 && ok=true
        fi
        fact "$tool" restore_ok "$ok"
        [[ $ok == true ]] || say "    restored data differs from the source: $LOGS/$CORPUS-$tool-restore.diff"
    fi
    rm -rf "$t"
}

op_verify() {
    local tool=$1 r
    r=$(repo "$tool")
    case $tool in
        cairn) step cairn verify "$CAIRN" --datastore "$r" verify --all ;;
        restic) step restic verify restic -r "$r" check --read-data ;;
        borg) step borg verify borg check --verify-data "$r" ;;
    esac
}

op_gc() {
    local tool=$1 r
    r=$(repo "$tool")
    case $tool in
        cairn) step cairn gc "$CAIRN" --datastore "$r" gc ;;
        restic) step restic gc restic -r "$r" prune ;;
        borg) step borg gc borg compact "$r" ;;
    esac
}

# ------------------------------------------------------- modification ----

UNDO=$WORK/undo

modify_corpus() {
    mkdir -p "$UNDO"
    if [[ $KIND == tree ]]; then
        python3 "$HERE/bench.py" modify-tree "$SRC" "$UNDO/tree.json"
    else
        local b saved=()
        mapfile -t blocks < <(python3 "$HERE/bench.py" image-blocks "$SRC")
        : >"$UNDO/image.blocks"
        for b in "${blocks[@]}"; do
            dd if="$SRC" of="$UNDO/image.$b" bs=4M skip="$b" count=1 status=none
            saved+=("$b")
        done
        touch -r "$SRC" "$UNDO/image.stamp"
        printf '%s\n' "$SRC" "${saved[@]}" >"$UNDO/image.blocks"
        for b in "${blocks[@]}"; do
            python3 "$HERE/bench.py" patch-block "$UNDO/patch" "$b"
            dd if="$UNDO/patch" of="$SRC" bs=4M seek="$b" count=1 conv=notrunc status=none
        done
        rm -f "$UNDO/patch"
        say "overwrote ${#blocks[@]} of $(($(stat -c %s "$SRC") / 4194304)) 4 MiB blocks"
    fi
}

# Undo a modification (also one left behind by an interrupted run).
revert_corpus() {
    if [[ -f $UNDO/tree.json ]]; then
        python3 "$HERE/bench.py" revert-tree "$UNDO/tree.json"
        rm -f "$UNDO/tree.json"
    fi
    if [[ -f $UNDO/image.blocks ]]; then
        local img b
        { read -r img; mapfile -t blocks; } <"$UNDO/image.blocks"
        for b in "${blocks[@]}"; do
            dd if="$UNDO/image.$b" of="$img" bs=4M seek="$b" count=1 conv=notrunc status=none
            rm -f "$UNDO/image.$b"
        done
        touch -r "$UNDO/image.stamp" "$img"
        rm -f "$UNDO/image.blocks" "$UNDO/image.stamp"
    fi
}

# ----------------------------------------------------------- per corpus ----

run_corpus() {
    CORPUS=$1
    KIND=$1
    CAIRN_SNAPSHOT=""
    if [[ $KIND == tree ]]; then
        if ((QUICK)); then SRC=$CORPUS_DIR/tree-quick; else SRC=$FULL_TREE; fi
        local files dirs links bytes
        files=$(find "$SRC" -type f | wc -l)
        dirs=$(find "$SRC" -type d | wc -l)
        links=$(find "$SRC" -type l | wc -l)
        bytes=$(du -sb "$SRC" | cut -f1)
        local what="Linux 6.1 source tree (Debian linux-source-6.1)"
        ((QUICK)) && what="first 10000 files of the Linux 6.1 source tree"
        corpus_fact title "\"Source tree\""
        corpus_fact summary "$(json_str "$what: $files files, $dirs directories, $links symlinks, $(python3 -c "print(f'{$bytes/2**20:.0f}')") MiB. 1 % change: one line appended to every 100th file ($((files / 100)) files).")"
        corpus_fact files "$files"
        corpus_fact bytes "$bytes"
    else
        if ((QUICK)); then SRC=$CORPUS_DIR/image-quick.raw; else SRC=$CORPUS_DIR/image.raw; fi
        local bytes used nblocks nmod
        bytes=$(stat -c %s "$SRC")
        used=$(cat "${SRC%.raw}.used")
        nblocks=$((bytes / 4194304))
        nmod=$(python3 "$HERE/bench.py" image-blocks "$SRC" | wc -l)
        corpus_fact title "\"Disk image\""
        corpus_fact summary "$(json_str "ext4 image of $((bytes / 1048576)) MiB (fully allocated file) made with mkfs.ext4 -d from part of the kernel tree plus 8 incompressible random files, $((used / 1048576)) MiB of file data; free space is zeros. 1 % change: $nmod of $nblocks 4 MiB blocks overwritten with random data (dd conv=notrunc).")"
        corpus_fact bytes "$bytes"
        corpus_fact used "$used"
    fi

    say "== corpus $CORPUS: $SRC"
    sync
    say "warming the page cache (reading the corpus once)"
    if [[ $KIND == tree ]]; then
        tar -C "$SRC" -cf - . | cat >/dev/null
    else
        cat "$SRC" >/dev/null
    fi

    # Reference points.
    if [[ $KIND == tree ]]; then
        measure reference statwalk sh -c 'find "$1" -printf "%s %T@\n" >/dev/null' sh "$SRC" ||
            die "stat walk failed"
        rm -rf "$OUT/ref-out" && mkdir -p "$OUT/ref-out"
        measure reference tartar sh -c 'tar -C "$1" -cf - . | tar -C "$2" -xf -' sh "$SRC" "$OUT/ref-out" ||
            die "tar | tar failed"
        sync
        rm -rf "$OUT/ref-out"
    else
        measure reference zstd sh -c 'zstd -3 -T2 -q -c "$1" >/dev/null' sh "$SRC" || die "zstd failed"
        rm -f "$OUT/ref-copy"
        measure reference copy cp --sparse=never "$SRC" "$OUT/ref-copy" || die "cp failed"
        sync
        rm -f "$OUT/ref-copy"
    fi

    local t
    for t in "${TOOL_LIST[@]}"; do op_init "$t"; done
    for t in "${TOOL_LIST[@]}"; do op_backup "$t" full 1; done
    for t in "${TOOL_LIST[@]}"; do op_backup "$t" unchanged 2; done
    modify_corpus
    for t in "${TOOL_LIST[@]}"; do op_backup "$t" changed 3; done
    for t in "${TOOL_LIST[@]}"; do op_restore "$t"; done
    revert_corpus
    for t in "${TOOL_LIST[@]}"; do op_verify "$t"; done
    for t in "${TOOL_LIST[@]}"; do op_gc "$t"; done
    for t in "${TOOL_LIST[@]}"; do
        [[ -d $(repo "$t") ]] && fact "$t" repo_bytes "$(du -sb "$(repo "$t")" | cut -f1)"
    done
}

# ----------------------------------------------------------------- main ----

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
UNDO=$WORK/undo
export RESTIC_CACHE_DIR=$WORK/cache/restic
export BORG_BASE_DIR=$WORK/cache/borg

ensure_packages
revert_corpus # left over from an interrupted run

# Restores (and the tar | tar and cp references) write into $OUT. On this
# kind of virtual machine the cost of creating files on the ext4 work disk
# swings by a factor of five between identical runs (tar | tar x of the tree
# measured 8 s to 44 s), so by default $OUT is a tmpfs: every tool then
# writes to the same, steady target and the figures compare the tools, not
# the disk's mood. --restore-on-disk writes to $WORK/out instead.
OUT=$WORK/out
OUT_FS=disk
cleanup() {
    revert_corpus
    if [[ $OUT_FS == tmpfs ]]; then umount "$OUT" 2>/dev/null || true; fi
}
trap cleanup EXIT
mkdir -p "$OUT"
if ((!RESTORE_ON_DISK)) && mount -t tmpfs -o size=8g tmpfs "$OUT" 2>/dev/null; then
    OUT_FS=tmpfs
else
    say "restores go to the work disk ($OUT)"
fi
export CAIRN_BENCH_OUT_FS=$OUT_FS

if has_tool cairn; then build_cairn; fi

avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
need_gib=12
((QUICK)) && need_gib=2
((avail_kib > need_gib * 1048576)) ||
    die "only $((avail_kib / 1048576)) GiB free in $WORK; a run needs about $need_gib GiB"

build_full_tree
for c in "${CORPORA[@]}"; do
    if [[ $c == tree ]]; then
        ((QUICK)) && build_quick_tree
    elif ((QUICK)); then
        build_image image-quick 256M 32 kernel mm lib fs
    else
        build_image image 2G 384 drivers/gpu drivers/net Documentation fs
    fi
done

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
LOGS=$WORK/logs/$RUN_ID
mkdir -p "$LOGS"
MEAS=$LOGS/measurements.jsonl
: >"$MEAS"
rm -rf "$WORK/cache" "$WORK/restore"
say "logs in $LOGS"

for c in "${CORPORA[@]}"; do run_corpus "$c"; done
revert_corpus

if ((QUICK)); then
    RESULTS=$WORK/results-quick.json MD=$WORK/results-quick.md
else
    RESULTS=$WORK/results.json MD=$WORK/results.md
fi
collect=(python3 "$HERE/bench.py" collect --measurements "$MEAS" --results "$RESULTS"
    --markdown "$MD" --corpora "$(IFS=,; echo "${CORPORA[*]}")" --tools "$TOOLS" --work "$WORK")
[[ -n $CAIRN ]] && collect+=(--cairn "$CAIRN")
((QUICK)) && collect+=(--quick)
((FRESH)) && collect+=(--fresh)
((WRITE_DOC)) && collect+=(--doc "$DOC")
"${collect[@]}"
say "results: $RESULTS, $MD$( ((WRITE_DOC)) && echo ", $DOC")"

if ((${#FAILED[@]})); then
    for k in "${!FAILED[@]}"; do say "FAILED $k: ${FAILED[$k]}"; done
    exit 1
fi
