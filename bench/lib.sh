# shellcheck shell=bash
# Helpers the benchmark scripts share (sourced, needs $WORK).

now() { date +%s.%N; }

# Digest of every file's path and contents under a directory.
tree_digest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum); }

# The median of its arguments (numbers; one argument holding several,
# separated by spaces, is split too).
median() {
    # shellcheck disable=SC2048,SC2086
    python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" $*
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
