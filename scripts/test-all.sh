#!/usr/bin/env bash
# Install what the test suite needs, then run all of it: formatting, lints,
# unit tests, the end-to-end suite against the real binary, and a build of
# every fuzz target. Safe to run repeatedly; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's name and when it began (seconds since the start): the end
# of the output lists how long each took.
steps=()
starts=()
say() {
  printf '\n== %s\n' "$*"
  steps+=("$*")
  starts+=("$SECONDS")
}
timings() {
  echo
  echo "seconds per step:"
  local i end
  for ((i = 0; i < ${#steps[@]}; i++)); do
    end=${starts[i + 1]:-$SECONDS}
    printf '%6d  %s\n' $((end - starts[i])) "${steps[i]}"
  done
  printf '%6d  in all\n' "$SECONDS"
}

# The suite makes device nodes, files owned by other users, loop devices
# and tmpfs mounts, and installs Debian packages: it needs root.
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test-all.sh needs root (device nodes, file owners, loop devices, tmpfs mounts, apt);" >&2
  echo "run it as root, e.g. in a throwaway VM or container: sudo ./scripts/test-all.sh" >&2
  exit 1
fi

need_pkgs=()
command -v setfacl >/dev/null || need_pkgs+=(acl)
command -v getfattr >/dev/null || need_pkgs+=(attr)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)
command -v mold >/dev/null || need_pkgs+=(mold)
# The dashboard's browser test drives headless Chromium over WebDriver.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
# The volume tests read Cairn's volumes back with Bacula's own tools, bls and
# bextract (testkit's `bacula`), from Debian's bacula-sd, which puts them in
# /usr/sbin: look there too when root's PATH lacks it.
on_sbin_path() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null; }
if ! { on_sbin_path bls && on_sbin_path bextract; }; then
  need_pkgs+=(bacula-sd)
fi
# The appliance image's test builds the image (image/build.sh) and boots it
# in QEMU with OVMF under software emulation.
on_sbin_path mmdebstrap || need_pkgs+=(mmdebstrap)
on_sbin_path mcopy || need_pkgs+=(mtools)
on_sbin_path mkfs.vfat || need_pkgs+=(dosfstools)
on_sbin_path sfdisk || need_pkgs+=(fdisk)
on_sbin_path objcopy || need_pkgs+=(binutils)
[ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need_pkgs+=(systemd-boot-efi)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_pkgs+=(ovmf)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # bacula-sd's package starts and enables its storage daemon on install; the
  # tests want only its tools, which run on a configuration of their own, not
  # a daemon listening on port 9103. A policy-rc.d that refuses every start
  # (exit 101) keeps invoke-rc.d and deb-systemd-invoke from starting it; it
  # is ours only for the install and removed after (one already there, as in
  # most containers, is left as it is). Then, on a host run by systemd, the
  # unit is disabled so that it does not start at the next boot either: only
  # when this run installed it, never a bacula-sd someone set up.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    own_policy=1
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# scripts/test-all.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  if [ -n "$own_policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if [[ " ${need_pkgs[*]} " == *" bacula-sd "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now bacula-sd.service >/dev/null 2>&1 || true
  fi
fi
# From here on, however the script ends, it lists how long each step took.
trap timings EXIT
# qemu-system-x86 from bookworm-backports, the suite the machine's own
# qemu-utils come from: bookworm's 7.2 would replace them with older ones.
if ! command -v qemu-system-x86_64 >/dev/null; then
  say "installing qemu-system-x86 from bookworm-backports"
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      >/etc/apt/sources.list.d/bookworm-backports.sources
    apt-get update -qq
  fi
  apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
fi

# The example policies and the hostile test guests are built from source
# as WebAssembly components by the tests.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  say "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# The Python example policies (policies-py/) are built by the tests with
# componentize-py, pinned: appliance/policy-guests/build.rs names the same.
componentize_py=0.25.1
if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $componentize_py" ]; then
  say "pip install componentize-py==$componentize_py"
  pip install --quiet "componentize-py==$componentize_py"
fi

# mold links the test binaries several times faster; same flags for every step
# so that nothing is rebuilt between them.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=mold"
# The S3 datastore's tests run against Garage, a distributed S3-compatible
# server, built from crates.io into a cache that a later run on the same
# machine finds (testkit's `garage`). Only what the tests use (the S3 API,
# the sqlite metadata engine; no metrics, K2V or LMDB) at opt-level 1:
# 5m22s on 2 cores, against 8m44s for the default features at opt-level 3,
# with the S3 tests as fast (10.6 s against 11.8 s).
garage_version=2.5.0
garage_root=/var/cache/cairn-test/garage
if [ "$("$garage_root/bin/garage" --version 2>/dev/null | awk '{print $2}')" != "cargo:$garage_version" ]; then
  say "cargo install garage $garage_version (into $garage_root; about 5 minutes)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 nice cargo install --locked --quiet garage --version "$garage_version" \
    --root "$garage_root" --no-default-features --features bundled-libs,sqlite
fi

# Run the tests that need root, Chromium or componentize-py too (testkit's
# `needs`; without it they are skipped). Set before the first cargo
# command: the policy guests' build script builds the Python examples only
# when it is set.
export CAIRN_TEST_ALL=1

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The example policies and the hostile test guests are workspaces of their
# own, built for wasm32-wasip2 (appliance/policy-guests/build.rs): the same
# formatting, and their lints for the target they are built for.
for guests in policies tests/guests; do
  say "cargo fmt --check, cargo clippy ($guests/, wasm32-wasip2)"
  cargo fmt --all --check --manifest-path "$guests/Cargo.toml"
  cargo clippy --locked --target wasm32-wasip2 --manifest-path "$guests/Cargo.toml" \
    --target-dir target/wasm-lint --all-targets --quiet -- -D warnings
done

say "layering (ARCHITECTURE.md invariants)"
./scripts/check-layers.sh

say "build the tests"
cargo test --workspace --quiet --no-run

say "unit and end-to-end tests"
mkdir -p target
status=0
# Every test binary runs even after one fails, so that a failed run lists
# all its failures and the count below covers the whole suite.
cargo test --workspace --quiet --no-fail-fast 2>&1 | tee target/test-output.txt || status=$?
# The example policies' allocator is plain Rust: its own tests run natively.
cargo test --quiet --locked --manifest-path policies/Cargo.toml --target-dir target/policies-native \
  -p oneshot-alloc 2>&1 | tee -a target/test-output.txt || status=$?

say "fuzz targets build"
cargo build --quiet --manifest-path fuzz/Cargo.toml

passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
echo "dashboard screenshots: target/tmp/ui-screenshots/"
exit "$status"
