#!/usr/bin/env bash
# Regenerate tests/data/golden-volume-v1/Vol1: the snapshot of the golden
# datastore (tests/data/golden-v1) written as a volume by volume format
# version 1 (Bacula's BB02 blocks, label version 11; docs/formats.md).
# Every later build must list and extract it. Run only when the fixture is
# lost; a new volume format gets a new fixture beside this one.
#
# Usage: tests/data/make-golden-volume-v1.sh PATH/TO/cairn
set -euo pipefail
CAIRN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -a "$HERE/golden-v1/datastore" "$WORK/ds"
mkdir -p "$HERE/golden-volume-v1"
rm -f "$HERE/golden-volume-v1/Vol1"
"$CAIRN" --datastore "$WORK/ds" volume write host/golden/2026-01-02T03:04:05Z \
    --block-size 64K --to "$HERE/golden-volume-v1/Vol1"
