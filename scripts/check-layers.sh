#!/usr/bin/env bash
# The layering invariants of ARCHITECTURE.md, checked on the source and the
# dependency graph: each line says what must hold, and the check fails
# naming the file or crate that breaks it.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
broken() { echo "layering: $*" >&2; fail=1; }

# Matches in the non-test code of a crate's src/ (files named tests.rs or
# *_tests.rs and `#[cfg(test)]` modules at the end of a file are skipped).
code_matches() {
  local crate=$1 pattern=$2
  find "appliance/$crate/src" -name '*.rs' ! -name 'tests.rs' ! -name '*_tests.rs' -print0 |
    while IFS= read -r -d '' f; do
      awk '/^#\[cfg\(test\)\]/ { exit } { print FILENAME ":" FNR ": " $0 }' "$f"
    done | grep -E "$pattern" || true
}

found=$(code_matches chunker 'std::fs|File::|OpenOptions|std::path')
[ -z "$found" ] || broken "chunker opens no path, but: $found"

found=$(code_matches filevol 'std::thread|thread::spawn|thread::scope|rayon|crossbeam')
[ -z "$found" ] || broken "filevol knows no threads, but: $found"

for crate in model chunker filevol catalog engine policy protocol dto jobhost client volfmt tape osimage bucket; do
  # (The policy compiler child reports to its parent on stderr: a protocol,
  # marked with ERROR_MARK, not talk to a terminal.)
  found=$(code_matches "$crate" '\b(e?println|e?print|dbg)!' | grep -v ERROR_MARK || true)
  [ -z "$found" ] || broken "$crate prints nothing (only the binary talks to terminals), but: $found"
done

# Dependencies: nothing below the binary knows HTTP servers, clap, askama or
# terminals; nothing below the engine (and not the engine) knows tokio.
# The one exception is the leaf crate `bucket` (S3 through object_store,
# which is async): it keeps its runtime inside and offers blocking calls,
# so the graphs below are read with it pruned, and it is checked apart.
# (`--prune` refuses a package the crate does not use.)
tree_without_bucket() {
  local all; all=$(cargo tree -q -p "$1" -e normal --prefix none 2>/dev/null | awk '{print $1}' | sort -u)
  if grep -qx bucket <<<"$all"; then
    cargo tree -q -p "$1" -e normal --prune bucket --prefix none 2>/dev/null | awk '{print $1}' | sort -u
  else
    echo "$all"
  fi
}
for crate in model chunker filevol catalog engine protocol; do
  deps=$(tree_without_bucket "$crate")
  for banned in tokio axum axum-server clap askama indicatif reqwest hyper; do
    if grep -qx "$banned" <<<"$deps"; then broken "$crate must not depend on $banned"; fi
  done
done
deps=$(cargo tree -q -p chunker -e normal --prefix none | awk '{print $1}' | sort -u)
for own in model filevol catalog engine policy protocol dto jobhost client server cairn; do
  if grep -qx "$own" <<<"$deps"; then broken "chunker is a leaf crate, but depends on $own"; fi
done

# The crates by role (ARCHITECTURE.md): the server never uses the CLI or
# the client; the client never uses the server, the policy glue or
# wasmtime; the policy glue and the JSON types know neither HTTP nor the
# command line. Checked on the resolved dependency graph.
crate_deps() { tree_without_bucket "$1"; }
refuse() {
  local crate=$1; shift
  local deps; deps=$(crate_deps "$crate")
  [ -n "$deps" ] || { broken "cargo tree -p $crate gave nothing"; return; }
  for banned in "$@"; do
    if grep -qx "$banned" <<<"$deps"; then broken "$crate must not depend on $banned"; fi
  done
}
refuse server cairn client clap indicatif reqwest
refuse client server cairn jobhost policy wasmtime axum askama clap
refuse jobhost server cairn client axum askama clap reqwest
refuse dto server cairn client jobhost policy axum clap reqwest tokio
refuse protocol server cairn client jobhost policy engine axum clap reqwest tokio
# The volume format is a leaf: a person with a tape and this crate alone
# can read it back.
refuse volfmt model chunker filevol catalog engine policy protocol dto jobhost client server cairn tokio
# Tape drives and changers know blocks and cartridges, nothing of
# datastores, snapshots, pools or servers.
refuse tape model chunker filevol catalog engine policy protocol dto jobhost client server cairn tokio axum clap
# The appliance's operating system (bundles, slots, data disk, network)
# knows nothing of backups, HTTP or the command line.
refuse osimage model chunker filevol catalog engine policy protocol dto jobhost client server cairn tape tokio axum clap reqwest
# Object storage knows keys and bytes, nothing of chunks or snapshots;
# no code above it names tokio because of it.
refuse bucket model chunker filevol catalog engine policy protocol dto jobhost client server cairn tape axum clap
found=$(code_matches filevol 'tokio::|use tokio|object_store|async fn|\.await')
[ -z "$found" ] || broken "filevol reaches the bucket only through bucket's blocking calls, but: $found"

# No module circles inside a crate (scripts/check-modules.py).
if ! modules=$(python3 scripts/check-modules.py); then
  broken "module circles inside a crate:
$modules"
fi

if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "layering: chunker opens no path, filevol knows no threads, libraries print nothing, no HTTP/CLI/tokio below the engine, the server uses neither the CLI nor the client, no module circles"
