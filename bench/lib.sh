# shellcheck shell=bash
# Helpers the benchmark scripts share (sourced, needs $WORK).

now() { date +%s.%N; }

# Digest of every file's path and contents under a directory.
tree_digest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum); }

# The median of its arguments (numbers; one argument holding several,
# separated by spaces, is split too), to three decimals: the median of an
# even count is a mean, which a float prints as 2.5599999999999996.
median() {
    # shellcheck disable=SC2048,SC2086
    python3 -c "import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 3))" $*
}

# timed KEY COMMAND...: sync, run it (stdout to $WORK/last.out, stderr to
# $WORK/last.err), and add its seconds to SECS[KEY].
declare -A SECS
timed() {
    local key=$1 t0 t1
    shift
    sync
    t0=$(now)
    "$@" >"$WORK/last.out" 2>"$WORK/last.err"
    t1=$(now)
    SECS[$key]="${SECS[$key]:-} $(python3 -c "print(f'{$t1 - $t0:.3f}')")"
}

# cairn_binary: make CAIRN an absolute path: $CAIRN, else a release build
# made in $ROOT. Needs a `say` function.
cairn_binary() {
    if [[ -z ${CAIRN:-} ]]; then
        say "building cairn (release)"
        (cd "$ROOT" && cargo build --release --quiet -p cairn)
        CAIRN=$ROOT/target/release/cairn
    fi
    CAIRN=$(realpath "$CAIRN")
}

# make_corpus: set TREE (CAIRN_BENCH_TREE, else $WORK/corpus/tree: the
# Linux source tree when /usr/src/linux-source-6.1.tar.xz is there, else a
# copy of /usr/share and /usr/lib) and IMAGE ($WORK/corpus/disk.img: 768
# MiB of a tar of the tree then 256 MiB of random bytes), making what is
# missing; `make_corpus tree` makes no image. Needs a `say` function.
make_corpus() {
    mkdir -p "$WORK/corpus"
    TREE=${CAIRN_BENCH_TREE:-$WORK/corpus/tree}
    IMAGE=$WORK/corpus/disk.img
    if [[ ! -d $TREE ]]; then
        mkdir -p "$TREE"
        if [[ -f /usr/src/linux-source-6.1.tar.xz ]]; then
            say "extracting the Linux tree"
            tar -C "$TREE" --strip-components=1 -xJf /usr/src/linux-source-6.1.tar.xz
        else
            say "copying /usr/share and /usr/lib"
            cp -a /usr/share /usr/lib "$TREE"/ 2>/dev/null || true
        fi
    fi
    if [[ ${1:-} != tree && ! -f $IMAGE ]]; then
        say "making the image"
        { tar -C "$TREE" -cf - . 2>/dev/null | head -c $((768 << 20)) || true; head -c $((256 << 20)) /dev/urandom; } >"$IMAGE"
    fi
}

# write_doc_section FILE NAME HEADING TEXT: put TEXT between the markers
# <!-- NAME:begin --> and <!-- NAME:end --> of FILE, adding them under a
# new "## HEADING" at its end when they are not there.
write_doc_section() {
    python3 - "$@" <<'PY'
import sys
path, name, heading, table = sys.argv[1:]
text = open(path).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
if begin not in text:
    text += f"\n## {heading}\n\n{begin}\n{end}\n"
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
PY
}
