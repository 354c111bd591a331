#!/usr/bin/env bash
# A datastore in an S3 bucket against a local one, and against restic's S3
# backend, on the same Garage node, corpus and run.
#
# Usage: bench/s3.sh
#
# Corpus: the Linux 6.1 source tree (Debian `linux-source-6.1`, ~1.4 GB in
# ~78,000 files), or the tree named by CAIRN_BENCH_TREE. For each round:
# a first backup, an unchanged second one and a restore (of the second),
# by `cairn` into a local datastore, by `cairn` into a datastore in a
# Garage bucket (`cairn init --s3`), and by restic into another bucket of
# the same Garage node (`restic -r s3:…`). Garage runs on this machine,
# with block compression off (both tools send compressed data); its data,
# the datastores, the repository and the restores live in tmpfs when it
# has room, so the figures are the software's, not this disk's. The S3
# restore starts from an empty cache. Cairn's requests and bytes come from
# its own counters (`backup --json`, `object_store`); restic's requests
# from Garage's metrics. Work files live in /dev/shm/cairn-bench-s3 (or
# $CAIRN_BENCH_DIR/s3); Garage is taken from CAIRN_GARAGE, else
# /var/cache/cairn-test/garage/bin/garage (scripts/test-all.sh builds it).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz
GARAGE=${CAIRN_GARAGE:-/var/cache/cairn-test/garage/bin/garage}
ROUNDS=${CAIRN_BENCH_ROUNDS:-3}
PORT=${CAIRN_BENCH_PORT:-18900}
KEY_ID=GK31c2f218a2e44f485b94239e
SECRET=b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f5f8a5d8cb9d8ef13

if [[ -n ${CAIRN_BENCH_DIR:-} ]]; then
    WORK=$CAIRN_BENCH_DIR/s3
elif (($(df -B1 --output=avail /dev/shm | tail -1) > 8 << 30)); then
    WORK=/dev/shm/cairn-bench-s3
else
    WORK=$HERE/scratch/s3
fi

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

[[ -x $GARAGE ]] || { echo "needs Garage at $GARAGE (or CAIRN_GARAGE)" >&2; exit 2; }
command -v restic >/dev/null || { echo "needs restic: apt-get install restic" >&2; exit 2; }

say "building cairn (release)"
(cd "$ROOT" && cargo build --release --quiet -p cairn)
CAIRN=$ROOT/target/release/cairn

mkdir -p "$WORK"
TREE=${CAIRN_BENCH_TREE:-$WORK/corpus/linux-source-6.1}
if [[ ! -d $TREE ]]; then
    [[ -f $KERNEL_TARBALL ]] || { echo "needs $KERNEL_TARBALL: apt-get install linux-source-6.1" >&2; exit 2; }
    say "extracting the kernel tree"
    mkdir -p "$WORK/corpus"
    tar -C "$WORK/corpus" -xJf "$KERNEL_TARBALL"
fi

# Garage: one node, on loopback, everything under $WORK/garage.
G=$WORK/garage
rm -rf "$G"
mkdir -p "$G/meta" "$G/data"
cat >"$G/garage.toml" <<EOF
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$((PORT + 1))"
rpc_public_addr = "127.0.0.1:$((PORT + 1))"
rpc_secret = "4a6f5c1e2d3b4a59687766554433221100ffeeddccbbaa998877665544332211"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$PORT"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$((PORT + 3))"
EOF
garage() { "$GARAGE" -c "$G/garage.toml" "$@"; }
"$GARAGE" -c "$G/garage.toml" server >"$G/garage.log" 2>&1 &
GARAGE_PID=$!
trap 'kill $GARAGE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do garage status >/dev/null 2>&1 && break; sleep 0.1; done
NODE=$(garage node id -q | cut -d@ -f1)
garage layout assign -z dc1 -c 10G "$NODE" >/dev/null
garage layout apply --version 1 >/dev/null
garage key import -n bench --yes "$KEY_ID" "$SECRET" >/dev/null
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=garage
export RESTIC_PASSWORD=bench

# Sum of Garage's S3 request counters (all endpoints).
s3_requests() {
    curl -s "http://127.0.0.1:$((PORT + 3))/metrics" |
        awk '/^api_s3_request_counter/ { s += $NF } END { printf "%d\n", s }'
}

OUT=$WORK/out
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
show() {
    local m
    m=$(median "${SECS[$1]}")
    python3 -c "print(f'{\"$1\":<24} {$m:7.2f} s {$TREE_BYTES/$m/1e6:8.1f} MB/s   rounds:${SECS[$1]}')"
}
ratio() { python3 -c "print(f'{\"$1 / $2\":<48} {$(median "${SECS[$1]}") / $(median "${SECS[$2]}"):.2f}')"; }
# counters FILE: requests, PUTs and MB sent from a `backup --json` summary.
counters() {
    python3 -c "
import json,sys
o = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['object_store']
print(f\"{o['requests']} requests ({o['puts']} PUT, {o['gets']} GET), {o['bytes_sent']/1e6:.1f} MB sent\")" "$1"
}

say "warming the page cache"
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null
echo "corpus: $TREE ($TREE_BYTES bytes); $(nproc) cores; work in $WORK"
for round in $(seq 1 "$ROUNDS"); do
    say "round $round of $ROUNDS"
    rm -rf "$WORK/local" "$WORK/s3ds" "$OUT"
    garage bucket create "cairn-$round" >/dev/null
    garage bucket allow --read --write --owner "cairn-$round" --key bench >/dev/null
    garage bucket create "restic-$round" >/dev/null
    garage bucket allow --read --write --owner "restic-$round" --key bench >/dev/null

    "$CAIRN" --datastore "$WORK/local" init >/dev/null
    timed "cairn local first" "$CAIRN" --datastore "$WORK/local" backup "$TREE" --group host/tree --time 2026-12-01T00:00:00Z
    timed "cairn local unchanged" "$CAIRN" --datastore "$WORK/local" backup "$TREE" --group host/tree --time 2026-12-01T01:00:00Z
    timed "cairn local restore" "$CAIRN" --datastore "$WORK/local" restore host/tree/2026-12-01T01:00:00Z "$OUT/local"
    want=$(tree_digest "$OUT/local"); rm -rf "$OUT" "$WORK/local"

    "$CAIRN" --datastore "$WORK/s3ds" init --s3 "$ENDPOINT" --bucket "cairn-$round" --region garage >/dev/null
    timed "cairn s3 first" "$CAIRN" --datastore "$WORK/s3ds" backup "$TREE" --group host/tree --time 2026-12-01T00:00:00Z --json
    echo "round $round, cairn s3 first: $(counters "$WORK/last.out")"
    timed "cairn s3 unchanged" "$CAIRN" --datastore "$WORK/s3ds" backup "$TREE" --group host/tree --time 2026-12-01T01:00:00Z --json
    echo "round $round, cairn s3 unchanged: $(counters "$WORK/last.out")"
    rm -rf "$WORK/s3ds/cache"
    timed "cairn s3 restore" "$CAIRN" --datastore "$WORK/s3ds" restore host/tree/2026-12-01T01:00:00Z "$OUT/s3"
    got=$(tree_digest "$OUT/s3"); rm -rf "$OUT"
    [[ $want == "$got" ]] || { echo "the tree restored from S3 differs" >&2; exit 1; }
    rm -rf "$WORK/s3ds"

    R=(restic -r "s3:$ENDPOINT/restic-$round" --quiet)
    "${R[@]}" init >/dev/null
    before=$(s3_requests)
    timed "restic s3 first" "${R[@]}" backup "$TREE"
    echo "round $round, restic s3 first: $(($(s3_requests) - before)) requests"
    before=$(s3_requests)
    timed "restic s3 unchanged" "${R[@]}" backup "$TREE"
    echo "round $round, restic s3 unchanged: $(($(s3_requests) - before)) requests"
    timed "restic s3 restore" "${R[@]}" restore latest --target "$OUT/restic"
    got=$(tree_digest "$OUT/restic$TREE"); rm -rf "$OUT"
    [[ $want == "$got" ]] || { echo "restic's restored tree differs" >&2; exit 1; }
done
echo
for label in "cairn local first" "cairn s3 first" "restic s3 first" \
    "cairn local unchanged" "cairn s3 unchanged" "restic s3 unchanged" \
    "cairn local restore" "cairn s3 restore" "restic s3 restore"; do
    show "$label"
done
echo
echo "time ratios, medians of $ROUNDS rounds (goals: S3/local at most 1.5 first, 1.3 unchanged, 2 restore)"
for step in first unchanged restore; do
    ratio "cairn s3 $step" "cairn local $step"
    ratio "cairn s3 $step" "restic s3 $step"
done
