#!/usr/bin/env bash
# Response times of `cairn serve` with many snapshots in the catalog.
#
# Usage: bench/server.sh [SNAPSHOTS] [REQUESTS]   (defaults: 10000 and 200)
#
# Makes one real snapshot of a small tree, copies its directory to
# SNAPSHOTS snapshots of one group (one per hour back in time; they share
# every chunk), rebuilds the catalog from the datastore, starts a release
# build of `cairn serve` over HTTPS on a loopback port, logs in, and times
# REQUESTS requests to each page and API route over one kept-alive
# connection (curl's time_total per request). Prints p50, p99 and max per
# route. Work files live in bench/scratch/server/ (or $CAIRN_BENCH_DIR/server).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${CAIRN_BENCH_DIR:-$HERE/scratch}/server
COUNT=${1:-10000}
REQUESTS=${2:-200}
PORT=${CAIRN_BENCH_PORT:-18417}

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

say "building cairn (release)"
(cd "$ROOT" && cargo build --release --quiet -p cairn)
CAIRN=$ROOT/target/release/cairn

rm -rf "$WORK"; mkdir -p "$WORK/src/etc"
for i in $(seq 1 50); do head -c 4096 /dev/urandom > "$WORK/src/etc/file$i"; done
DS=$WORK/ds
"$CAIRN" --datastore "$DS" init >/dev/null
"$CAIRN" --datastore "$DS" backup "$WORK/src" --group host/bench --time 2020-01-01T00:00:00Z >/dev/null

say "copying the snapshot to $COUNT snapshots"
python3 - "$DS/snapshots/host/bench" "$COUNT" <<'PY'
import json, os, shutil, sys, datetime
group, count = sys.argv[1], int(sys.argv[2])
first = os.path.join(group, "2020-01-01T00:00:00Z")
base = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
files = {name: open(os.path.join(first, name), "rb").read() for name in os.listdir(first)}
manifest = json.loads(files["manifest.json"])
for i in range(1, count):
    t = (base + datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    d = os.path.join(group, t)
    os.mkdir(d)
    for name, data in files.items():
        if name == "manifest.json":
            manifest["time"] = t
            data = json.dumps(manifest).encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
PY
"$CAIRN" --datastore "$DS" catalog rebuild

say "starting cairn serve"
"$CAIRN" --datastore "$DS" serve --listen 127.0.0.1:$PORT > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "fingerprint" "$WORK/serve.log" && break; sleep 0.1; done
PASSWORD=$(sed -n 's/^created user admin with password //p' "$WORK/serve.log")
BASE=https://127.0.0.1:$PORT
curl -sk -c "$WORK/cookies" -o /dev/null -d "user=admin&password=$PASSWORD&next=/" "$BASE/login"
RSS_BEFORE=$(ps -o rss= -p $SERVER)

time_route() {
    local name=$1 path=$2 urls=()
    for _ in $(seq 1 "$REQUESTS"); do urls+=(-o /dev/null "$BASE$path"); done
    curl -sk -b "$WORK/cookies" -w '%{time_total} %{size_download}\n' "${urls[@]}" \
        | python3 -c '
import sys
rows = [line.split() for line in sys.stdin if line.strip()]
t = sorted(float(r[0]) * 1000 for r in rows)
pct = lambda p: t[min(len(t) - 1, int(round(p * (len(t) - 1))))]
print(f"| {sys.argv[1]} | `{sys.argv[2]}` | {int(rows[0][1]) // 1024} KiB | {pct(0.5):.1f} ms | {pct(0.99):.1f} ms | {t[-1]:.1f} ms |")
' "$name" "$path"
}

echo
echo "$COUNT snapshots in one group, $REQUESTS requests per route, one connection (TLS 1.3, HTTP/2):"
echo
echo "| route | path | body | p50 | p99 | max |"
echo "|---|---|---|---|---|---|"
time_route "dashboard overview" "/"
time_route "snapshot list, all (JSON)" "/api/v1/snapshots?group=host/bench"
time_route "snapshot list, one page (JSON)" "/api/v1/snapshots?group=host/bench&offset=9900&limit=100"
time_route "group page (newest 100)" "/groups/host/bench"
time_route "group page (oldest 100)" "/groups/host/bench?page=$(( (COUNT - 1) / 100 ))"
time_route "snapshot page" "/snapshots/host/bench/2020-01-01T00:00:00Z?path=src/etc"
time_route "status (JSON)" "/api/v1/status"
RSS_AFTER=$(ps -o rss= -p $SERVER)
echo
echo "server RSS: $((RSS_BEFORE / 1024)) MiB after start, $((RSS_AFTER / 1024)) MiB after the runs"
