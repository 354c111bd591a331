#!/usr/bin/env bash
# image/build.sh: build Cairn's bootable appliance image.
#
#   image/build.sh [options] OUTDIR
#
# writes into OUTDIR
#   cairn.raw              a GPT disk: EFI system partition (systemd-boot and
#                          slot A's unified kernel image), root slots A and B
#   cairn.qcow2            the same disk, compressed, for QEMU and hypervisors
#   cairn-update.bundle    the root file system and its kernel images, signed
#                          (`cairn appliance update FILE` on a running appliance)
#   cairn.manifest         the version, the Debian packages inside with their
#                          exact versions, and the SHA-256 of every output
#
# Options
#   --version V      the image's version (IMAGE_VERSION); default: Cairn's
#                    version and the date of the last commit, e.g. 0.1.0.20261204
#   --key FILE       Ed25519 signing key (`cairn appliance keygen`); default
#                    OUTDIR/signing.key, made when missing. Its public half goes
#                    into the image: only bundles it signed are accepted.
#   --cairn FILE     the cairn binary to install; default: target/release/cairn,
#                    built with cargo when missing
#   --bundle-only    build only the update bundle (and the manifest)
#   --broken         for tests: an image whose cairn service never starts
#
# Needs root (mmdebstrap runs maintainer scripts in a chroot) and Debian's
# mmdebstrap, e2fsprogs, dosfstools, mtools, fdisk, binutils (objcopy),
# systemd-boot-efi and qemu-utils. No loop device and no mount: the root
# file system is made with `mkfs.ext4 -d`, the EFI partition with mtools.
#
# Downloaded packages and the root tree they make are cached in
# $CAIRN_IMAGE_CACHE (default /var/cache/cairn-image): a second build with
# the same package list reuses the tree and only adds Cairn to it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

version='' key='' cairn_bin='' bundle_only='' broken=''
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --cairn) cairn_bin=$2; shift 2 ;;
    --bundle-only) bundle_only=1; shift ;;
    --broken) broken=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: image/build.sh [options] OUTDIR (see --help)" >&2; exit 2; }
out=$1
[ "$(id -u)" -eq 0 ] || { echo "build.sh needs root (mmdebstrap runs package scripts in a chroot)" >&2; exit 1; }
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk objcopy qemu-img; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null \
    || { echo "build.sh: $tool is missing (see the Debian packages in --help)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin:/sbin"
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
loader=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$stub" ] && [ -f "$loader" ] || { echo "build.sh: install systemd-boot-efi" >&2; exit 1; }

say() { printf '== %s\n' "$*" >&2; }
started=$(date +%s)

# Reproducible as far as bookworm's tools allow: file contents, modes and
# mtimes (SOURCE_DATE_EPOCH, the last commit's), partition and file system
# ids, the bundle. Not yet: mke2fs 1.47.0 copies each file's inode change
# time and has no SOURCE_DATE_EPOCH, and mtools stamps directories with the
# clock, so two builds' disks differ in those time stamps.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
if [ -z "$version" ]; then
  crate=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/appliance/cairn/Cargo.toml" | head -1)
  version="$crate.$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M)"
fi
case "$version" in
  *[!A-Za-z0-9._~]*|'') echo "build.sh: a version is letters, digits and . _ ~ only: $version" >&2; exit 2 ;;
esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$cairn_bin" ]; then
  cairn_bin=$repo/target/release/cairn
  if [ ! -x "$cairn_bin" ]; then
    say "cargo build --release -p cairn"
    (cd "$repo" && cargo build --release -p cairn)
  fi
fi
[ -x "$cairn_bin" ] || { echo "build.sh: no cairn binary at $cairn_bin" >&2; exit 1; }

if [ -z "$key" ]; then
  key=$out/signing.key
  if [ ! -f "$key" ]; then
    say "no --key: making a signing key in $key (keep it to sign later updates)"
    "$cairn_bin" appliance keygen "$key" >/dev/null
  fi
fi
pubkey=$work/update.pub
"$cairn_bin" appliance keygen --public-of "$key" >"$pubkey"

# ---------------------------------------------------------------- root tree
cache=${CAIRN_IMAGE_CACHE:-/var/cache/cairn-image}
mkdir -p "$cache/debs"
packages=$(grep -v '^#' "$here/packages" | grep . | sort | paste -sd, -)
# The tree depends on the package list and on this script's recipe for it.
recipe=$(sed -n '/^# recipe-start/,/^# recipe-end/p' "$0")
tree_key=$(printf '%s\n%s\n' "$packages" "$recipe" | sha256sum | cut -c1-16)
tree=$cache/rootfs-$tree_key.tar
# recipe-start
if [ ! -f "$tree" ]; then
  say "mmdebstrap bookworm ($packages)"
  cat >"$work/dpkg.cfg" <<'EOF'
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/bash-completion/*
EOF
  # The initramfs only needs what finds and mounts the root slot: the disk
  # controllers a VM or a server has, and ext4.
  mmdebstrap --variant=essential --mode=root --format=tar \
    --include="$packages" \
    --dpkgopt="$work/dpkg.cfg" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; echo MODULES=list >"$1/etc/initramfs-tools/conf.d/cairn.conf"; printf "%s\n" virtio_pci virtio_blk virtio_scsi sd_mod ahci nvme ext4 >"$1/etc/initramfs-tools/modules"' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives/"' \
    --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
    --customize-hook='cd "$1/usr/lib/modules/"*/kernel && rm -rf sound drivers/gpu drivers/media drivers/infiniband drivers/staging drivers/iio drivers/bluetooth drivers/net/wireless drivers/isdn drivers/hid/amd-sfh-hid drivers/input/joystick drivers/input/touchscreen net/wireless net/bluetooth net/mac80211 net/mac802154 net/6lowpan' \
    --customize-hook='chroot "$1" sh -c "depmod -a \$(ls /usr/lib/modules) && update-initramfs -u -k all"' \
    --customize-hook='rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"* "$1/etc/ssh/ssh_host_"*' \
    bookworm "$tree.part" http://deb.debian.org/debian
  mv "$tree.part" "$tree"
fi
# recipe-end

say "unpacking the tree and adding cairn $version"
root=$work/root
mkdir -p "$root"
tar -C "$root" -xpf "$tree" --numeric-owner
kver=$(ls "$root/usr/lib/modules")
install -m 0755 "$cairn_bin" "$root/usr/bin/cairn"
strip "$root/usr/bin/cairn" 2>/dev/null || true
cp -a "$here/rootfs/." "$root/"
mkdir -p "$root/efi" "$root/etc/cairn" "$root/var/lib/cairn"
install -D -m 0644 "$repo/appliance/systemd/cairn.service" "$root/etc/systemd/system/cairn.service"
install -D -m 0644 "$here/cairn.toml" "$root/usr/share/cairn/cairn.toml"
install -D -m 0644 "$pubkey" "$root/usr/share/cairn/update.pub"
if [ -n "$broken" ]; then
  # For the rollback test: a service that never becomes healthy.
  mkdir -p "$root/etc/systemd/system/cairn.service.d"
  printf '[Service]\nExecStart=\nExecStart=/bin/false\n' >"$root/etc/systemd/system/cairn.service.d/broken.conf"
fi
rm -f "$root/etc/os-release" "$root/usr/lib/os-release"
cat >"$root/usr/lib/os-release" <<EOF
PRETTY_NAME="Cairn $version"
NAME="Cairn"
ID=cairn
ID_LIKE=debian
VERSION="$version"
IMAGE_ID=cairn
IMAGE_VERSION=$version
HOME_URL="https://example.invalid/cairn"
EOF
ln -s ../usr/lib/os-release "$root/etc/os-release"
echo cairn >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tcairn\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
# Locked root account: the console runs Cairn's menu, not a login.
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
systemctl --root="$root" --quiet enable cairn.service cairn-data.service cairn-network.service \
  cairn-healthy.service cairn-console@tty1.service cairn-console@ttyS0.service \
  systemd-networkd.service systemd-resolved.service
systemctl --root="$root" --quiet disable ssh.service e2scrub_reap.service 2>/dev/null || true
systemctl --root="$root" --quiet mask getty@tty1.service serial-getty@ttyS0.service \
  systemd-boot-update.service systemd-boot-system-token.service e2scrub_all.timer dpkg-db-backup.timer
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version}\n' >"$work/packages.txt"

# The kernel and initramfs travel inside the unified kernel images.
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd"
rm -f "$root/boot/"* "$root/vmlinuz"* "$root/initrd.img"*
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

say "root file system (mkfs.ext4 -d)"
slot_mib=1024
used_kib=$(du -sk "$root" | cut -f1)
fs_mib=$(( (used_kib * 13 / 10) / 1024 + 64 ))
[ "$fs_mib" -le "$slot_mib" ] || { echo "build.sh: the root tree ($fs_mib MiB) outgrows a $slot_mib MiB slot" >&2; exit 1; }
# A UUID derived from a text (the same build, the same ids).
uuid_of() { printf 'cairn %s' "$1" | sha256sum | sed 's/^\(.\{8\}\)\(.\{4\}\).\(.\{3\}\).\(.\{3\}\)\(.\{12\}\).*/\1-\2-4\3-8\4-\5/'; }
uuid=$(uuid_of "root $version")
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L cairn-root -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0" \
  -b 4096 -m 0 -O ^has_journal -d "$root" "$work/rootfs.ext4" "${fs_mib}M"

say "unified kernel images (objcopy + systemd's EFI stub)"
for slot in a b; do
  # CAIRN_IMAGE_DEBUG=1: the whole journal on the console, for debugging a boot.
  quiet="quiet loglevel=3 systemd.show_status=error"
  [ -n "${CAIRN_IMAGE_DEBUG:-}" ] && quiet="systemd.journald.forward_to_console=1"
  printf 'root=PARTLABEL=cairn-root-%s ro rootwait cairn.slot=%s systemd.volatile=state console=tty0 console=ttyS0,115200 %s panic=10\n' \
    "$slot" "$slot" "$quiet" >"$work/cmdline-$slot"
  objcopy \
    --add-section .osrel="$root/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$work/cmdline-$slot" --change-section-vma .cmdline=0x30000 \
    --add-section .linux="$work/vmlinuz" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$work/initrd" --change-section-vma .initrd=0x3000000 \
    "$stub" "$work/uki-$slot.efi"
done

say "update bundle (signed)"
"$cairn_bin" appliance bundle --key "$key" --version "$version" --rootfs "$work/rootfs.ext4" \
  --uki-a "$work/uki-a.efi" --uki-b "$work/uki-b.efi" --out "$out/cairn-update.bundle" >/dev/null

if [ -z "$bundle_only" ]; then
  say "EFI system partition (mkfs.vfat + mtools)"
  esp_mib=256
  esp=$work/esp.img
  mkfs.vfat -C -F 32 -n CAIRN-ESP -i "$(printf '%08x' "$SOURCE_DATE_EPOCH" | cut -c1-8)" "$esp" $((esp_mib * 1024)) >/dev/null
  export MTOOLS_SKIP_CHECK=1
  mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/Linux ::/loader
  printf 'timeout 0\neditor no\nconsole-mode keep\n' >"$work/loader.conf"
  cp "$loader" "$work/BOOTX64.EFI"
  touch -d "@$SOURCE_DATE_EPOCH" "$work/loader.conf" "$work/BOOTX64.EFI" "$work/uki-a.efi"
  # -m: the files' times are SOURCE_DATE_EPOCH (directories get the clock's).
  mcopy -m -i "$esp" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -m -i "$esp" "$work/loader.conf" ::/loader/loader.conf
  # Slot A's entry is good from the start: no boot counter.
  mcopy -m -i "$esp" "$work/uki-a.efi" "::/EFI/Linux/cairn-$version-a.efi"

  say "GPT disk: ESP, root A, root B"
  raw=$out/cairn.raw
  rm -f "$raw"
  total_mib=$((1 + esp_mib + 2 * slot_mib + 1))
  truncate -s "${total_mib}M" "$raw"
  sfdisk --quiet "$raw" <<EOF
label: gpt
label-id: $(uuid_of "disk $version")
unit: sectors
first-lba: 2048
start=2048, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp", uuid=$(uuid_of "esp $version")
size=$((slot_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="cairn-root-a", uuid=$(uuid_of "root-a $version")
size=$((slot_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="cairn-root-b", uuid=$(uuid_of "root-b $version")
EOF
  dd if="$esp" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$work/rootfs.ext4" of="$raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
  say "qcow2"
  rm -f "$out/cairn.qcow2"
  qemu-img convert -c -O qcow2 "$raw" "$out/cairn.qcow2"
fi

{
  echo "# Cairn appliance image $version"
  echo "version $version"
  echo "kernel $kver"
  echo "source-date-epoch $SOURCE_DATE_EPOCH"
  echo "cairn $(sha256sum "$cairn_bin" | cut -d' ' -f1)"
  (cd "$out" && for f in cairn.raw cairn.qcow2 cairn-update.bundle; do
     [ -f "$f" ] && [ "$f" -nt "$work" ] && echo "sha256 $(sha256sum "$f")"
   done) || true
  echo "# Debian packages"
  sed 's/^/package /' "$work/packages.txt"
} >"$out/cairn.manifest"

say "done in $(( $(date +%s) - started )) s: $(ls "$out" | tr '\n' ' ')"
