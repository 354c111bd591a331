#!/usr/bin/env bash
# Regenerate tests/data/golden-v1: a small datastore written by format
# version 1, plus what any later reader must see in it. Run only when the
# fixture is lost; a new format version gets a new fixture beside this one,
# and golden-v1 stays as it is for as long as version 1 is readable.
#
# Usage: tests/data/make-golden-v1.sh PATH/TO/cairn   (run as root: owner 0)
set -euo pipefail
CAIRN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/golden-v1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SNAP=host/golden/2026-01-02T03:04:05Z

src=$WORK/src
mkdir -p "$src/www/sub" "$src/www/empty-dir"
printf 'hello cairn\n' >"$src/www/hello.txt"
: >"$src/www/empty"
ln -s hello.txt "$src/www/link"
ln "$src/www/hello.txt" "$src/www/sub/hard.txt"
mkfifo "$src/www/fifo"
python3 - "$src" <<'PY'
import random, sys
root = sys.argv[1]
r = random.Random(1)
open(f"{root}/www/sub/data.bin", "wb").write(bytes(r.getrandbits(8) for _ in range(70000)))
with open(f"{root}/www/sparse", "wb") as f:
    f.seek(1 << 20); f.write(b"end of a sparse file\n")
open(root.encode() + b"/www/na\xffme\nwith newline", "wb").write(b"odd name\n")
open(f"{root}/disk.img", "wb").write(b"\0" * 4096 + b"cairn image\n" * 100)
PY
setfattr -n user.golden -v "fixture v1" "$src/www/hello.txt"
chmod 0640 "$src/www/sub/data.bin"
chmod 1777 "$src/www/empty-dir"
chown -R 0:0 "$src"
chown -h 1234:5678 "$src/www/link"
find "$src" -exec touch -h -d 2026-01-02T03:04:05.123456789Z {} +

ds=$WORK/ds
"$CAIRN" --datastore "$ds" init >/dev/null
"$CAIRN" --datastore "$ds" backup "$src/www" "$src/disk.img" --group host/golden --tag golden \
    --time 2026-01-02T03:04:05Z >/dev/null

rm -rf "$OUT"
mkdir -p "$OUT"
# The catalog and lock files are rebuilt by any reader; keep the format's bytes only.
(cd "$ds" && find . -path ./catalog.redb -prune -o -path ./locks -prune -o -type f -print) |
    (cd "$ds" && cpio -pdm --quiet "$OUT/datastore")
"$CAIRN" --datastore "$ds" ls -R --json "$SNAP" www | python3 -m json.tool >"$OUT/ls-www.json"
"$CAIRN" --datastore "$ds" ls --json "$SNAP" | python3 -m json.tool >"$OUT/ls.json"
# Regular files as {"hex of the path bytes": "sha256"}.
python3 - "$src" >"$OUT/files.json" <<'PY'
import hashlib, json, os, sys
root = os.fsencode(sys.argv[1])
out = {}
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p):
            out[os.path.relpath(p, root).hex()] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps(dict(sorted(out.items())), indent=1))
PY
echo "wrote $OUT"
