#!/usr/bin/env bash
# Run every cargo-fuzz target (or the ones named) for SECONDS each, seeded
# from the golden fixtures, and write a line of figures per target to
# target/fuzz-report.txt: executions, coverage (edges), corpus size, and
# whether it found a crash (artifacts land in fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh 1800                 # every target, 30 minutes each
#   scripts/fuzz.sh 60 index manifest    # two targets, a minute each
#
# Installs the nightly toolchain (for the sanitizer flags) and cargo-fuzz
# when missing. Targets run one after another on one core each; JOBS=N runs
# N targets at once.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
jobs=${JOBS:-1}

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

# Seeds: every file of the golden datastore, by kind.
seed() {
  local target=$1 dir=fuzz/corpus/$1
  mkdir -p "$dir"
  case $target in
    chunk_blob) find tests/data -path '*chunks/*' -type f -exec cp -n {} "$dir/" \; ;;
    index) find tests/data -name '*.?idx' -type f -exec cp -n {} "$dir/" \; ;;
    meta_stream) ;; # the stream is inside chunks; the target builds its own seeds
    manifest) find tests/data -name '*.json' -type f -exec cp -n {} "$dir/" \; ;;
    volume) cp -n tests/data/golden-volume-v1/Vol1 "$dir/" ;;
    scsi) # the recorded answers, their comments dropped
      for f in appliance/tape/tests/fixtures/*.hex; do
        sed 's/#.*//' "$f" | xxd -r -p >"$dir/$(basename "$f" .hex)"
      done ;;
    bundle) cp -n tests/data/golden-bundle-v1/cairn-update.bundle "$dir/" ;;
  esac
}

mkdir -p target
report=target/fuzz-report.txt
: >"$report"
run() {
  local t=$1 log=target/fuzz-$1.log
  seed "$t"
  local status=ok
  cargo +nightly fuzz run --fuzz-dir fuzz -O "$t" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"$log" 2>&1 || status=FAILED
  local execs cov corpus
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  printf '%s: %s s, %s executions, coverage %s edges, corpus %s, %s\n' \
    "$t" "$seconds" "$execs" "$cov" "$corpus" "$status" | tee -a "$report"
}

running=0
for t in "${targets[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
if grep -q FAILED "$report"; then
  echo "a target found a crash: see target/fuzz-TARGET.log and fuzz/artifacts/" >&2
  exit 1
fi
