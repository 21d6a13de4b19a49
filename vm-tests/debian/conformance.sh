#!/usr/bin/env bash
# systemd conformance of the exo units on a real systemd, without NixOS or KVM: a Debian guest
# (debootstrap from the Debian mirror) boots under QEMU software emulation with the freshly built
# binary and the unit files rendered from nix/lib (the helpers the NixOS module uses) for one host
# with every role, then guest-check.sh checks READY under the sandbox, the join token minted for the
# co-located units and their admission, /readyz, the journal identifiers, the sandbox from
# inside the services' namespaces, kill -9 restarts with growing delays, the exposure scores, and a
# clean stop.
#
#   sudo vm-tests/debian/conformance.sh
#
# Needs root (debootstrap, chroot), debootstrap, qemu-system-x86 (qemu-system-x86_64), e2fsprogs
# (mke2fs -d), nix-bin (nix-instantiate), python3 and Go. The guest's root file system is cached in
# $EXO_CONFORMANCE_CACHE (default .cache/conformance) after the first run. Exits non-zero unless
# the guest reports PASS; without root or the tools it skips with the reason (fails under CI=true). EXO_BIN=path tests a binary built elsewhere instead of building one.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

suite=${DEBIAN_SUITE:-trixie} # systemd >= 254 for RestartSteps=/RestartMaxDelaySec=
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${EXO_CONFORMANCE_CACHE:-$repo/.cache/conformance}
guest_timeout=${EXO_CONFORMANCE_TIMEOUT:-540}

fail() {
  echo "conformance: $*" >&2
  exit 1
}

# A machine that cannot run the check skips it with the reason; CI must run it.
skip() {
  [ "${CI:-}" = true ] && fail "$* (CI=true: the conformance check must run)"
  echo "conformance: SKIP: $*"
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap and chroot)"
for tool in debootstrap:debootstrap qemu-system-x86_64:qemu-system-x86 mke2fs:e2fsprogs debugfs:e2fsprogs nix-instantiate:nix-bin go:golang python3:python3; do
  command -v "${tool%%:*}" >/dev/null || skip "${tool%%:*} not found (Debian package ${tool##*:})"
done
[ "$(uname -m)" = x86_64 ] || skip "the guest is x86_64; this host is $(uname -m)"

work=$(mktemp -d /var/tmp/exo-conformance.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
start=$(date +%s)
step() { echo "conformance: [$(($(date +%s) - start))s] $*"; }

# 1. The guest's root file system, built once.
rootfs_tar="$cache/rootfs-$suite.tar"
if [ ! -f "$rootfs_tar" ]; then
  step "debootstrap $suite from $mirror (first run only)"
  mkdir -p "$cache"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,curl,iproute2,procps,util-linux \
    "$suite" "$work/bootstrap" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    {
      tail -n 30 "$work/debootstrap.log"
      fail "debootstrap failed"
    }
  tar -C "$work/bootstrap" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$work/bootstrap"
fi
root="$work/root"
mkdir -p "$root"
tar -C "$root" -xf "$rootfs_tar"

# 2. The binary under test and the units rendered by the same helpers as the NixOS module.
if [ -n "${EXO_BIN:-}" ]; then
  step "use $EXO_BIN"
  install -m 0755 "$EXO_BIN" "$root/usr/local/bin/exo"
else
  step "build exo"
  go build -o "$root/usr/local/bin/exo" . || fail "go build failed"
fi
step "render units from nix/lib"
# One host with every role, as the NixOS module deploys it: the worker and API units join the
# master next to them with the token the exo-join-token oneshot mints from the master's CA.
nix-instantiate --store dummy:// --eval --strict --json -E "
  let l = import $repo/nix/lib;
  in l.plan {
    exe = \"/usr/local/bin/exo\"; nodeName = \"conformance\"; accelerator = \"cpu\";
    roles = { master = true; worker = true; api = true; };
  }" >"$work/plan.json" || fail "nix/lib plan does not evaluate"
unitdir="$root/etc/systemd/system"
mkdir -p "$unitdir"
python3 - "$unitdir" "$work/plan.json" <<'EOF_PY'
import json, sys
unitdir, path = sys.argv[1], sys.argv[2]
plan = json.load(open(path))
for name in plan["unitNames"]:
    open(f"{unitdir}/{name}.service", "w").write(plan["units"][name]["text"])
open(f"{unitdir}/exo.target", "w").write(plan["target"])
EOF_PY
ls "$unitdir"/exo-master.service "$unitdir"/exo-worker.service "$unitdir"/exo-api.service "$unitdir"/exo-join-token.service >/dev/null ||
  fail "units missing from the plan"

# 3. Guest setup: the exo system user, the check as a boot unit that powers the guest off.
chroot "$root" useradd --system --user-group --home-dir /var/lib/exo --shell /usr/sbin/nologin exo
install -m 0755 vm-tests/debian/guest-check.sh "$root/usr/local/sbin/exo-conformance"
cat >"$unitdir/exo-conformance.service" <<'EOF'
[Unit]
Description=exo systemd conformance checks
After=multi-user.target
[Service]
Type=oneshot
# The log goes to the disk (the host reads it back) and then to the console; the guest powers off
# at once: everything needed is synced, and an orderly shutdown only costs emulated time.
ExecStart=/bin/sh -c '/usr/local/sbin/exo-conformance >/var/log/exo-conformance.log 2>&1; cat /var/log/exo-conformance.log; sync; echo o >/proc/sysrq-trigger'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/exo-conformance.service "$root/etc/systemd/system/multi-user.target.wants/exo-conformance.service"
echo conformance >"$root/etc/hostname"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$root/etc/fstab"
# No getty or network wait: the guest has no network and nobody logs in.
rm -f "$root/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
# A getty on the console would hang up the check's output.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)
[ -f "$kernel" ] && [ -f "$initrd" ] || fail "no kernel/initrd in the guest image"
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd"

step "make the disk image"
mke2fs -q -t ext4 -L root -d "$root" "$work/disk.img" 3G || fail "mke2fs failed"
rm -rf "$root"
# A boot writes to its disk; a second boot (below) starts from this copy.
cp --sparse=always "$work/disk.img" "$work/disk.pristine"

# 4. Boot under TCG and collect the serial console. panic=-1 with -no-reboot ends QEMU at a guest
# kernel panic instead of leaving it hung until the timeout.
serial="$work/serial.log"
boot() {
  step "boot the guest under QEMU (TCG); timeout ${guest_timeout}s"
  set +e
  timeout "$guest_timeout" qemu-system-x86_64 \
    -accel tcg -machine q35 -cpu max -m 1536 -smp 2 \
    -display none -no-reboot -nic none \
    -kernel "$work/vmlinuz" -initrd "$work/initrd" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 panic=-1" \
    -drive "file=$work/disk.img,format=raw,if=virtio" \
    -serial "file:$serial"
  qemu_status=$?
  set -e
  step "guest finished (qemu status $qemu_status)"
  # The check's log is read back from the guest's disk (the console also carries it, interleaved
  # with boot messages); both outlive the work directory, for a look after a failure.
  cp "$serial" "$cache/last-serial.log"
  debugfs -R "cat /var/log/exo-conformance.log" "$work/disk.img" >"$cache/last-check.log" 2>/dev/null || true
  result=$(grep -a '^EXO-CONFORMANCE:' "$cache/last-check.log" | tail -n1 || true)
}
boot
# The emulated guest kernel itself has panicked under TCG now and then (an oops in the scheduler
# tick seconds into boot, before any exo code ran). That says nothing about exo, so such a run
# boots once more from a fresh disk; a second panic, or any other failure, fails the check.
if [ "$result" != "EXO-CONFORMANCE: PASS" ] && grep -aq 'Kernel panic' "$serial"; then
  echo "---- the guest kernel panicked; its console ----"
  grep -a -B 30 -A 3 'Kernel panic' "$serial" | tr -d '\r' | tail -n 40
  cp "$serial" "$cache/panic-serial.log"
  step "boot again from a fresh disk after the guest kernel panic"
  cp --sparse=always "$work/disk.pristine" "$work/disk.img"
  boot
fi
grep -a '^EXO-CHECK' "$cache/last-check.log" || true
if [ "$result" != "EXO-CONFORMANCE: PASS" ]; then
  echo "---- last lines of the serial console ($cache/last-serial.log) ----"
  tail -n 60 "$serial" | tr -d '\r'
  [ "$qemu_status" = 124 ] && fail "guest timed out after ${guest_timeout}s"
  fail "${result:-no result from the guest}"
fi
step "PASS"
