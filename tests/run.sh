#!/usr/bin/env bash
# The whole nhn test suite, on a fresh Debian 12 machine with Rust installed.
#
# 1. Installs the Debian packages the tests use, if any is missing (apt-get update once, then
#    apt-get install). Daemons from those packages are not started: a temporary policy-rc.d
#    blocks that, and each test starts its own peers, in its own network namespaces.
# 2. Checks formatting and lints, then runs `cargo test`.
#
# Run it as root: the network tests build namespaces, veths and Open vSwitch bridges. As a
# normal user they print "SKIP <test>: <reason>" and pass, except with CI=true, where a missing
# prerequisite fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  iproute2 iputils-ping procps curl ethtool   # network namespaces, veths, reachability
  openvswitch-switch                          # 802.1Q switches (userspace datapath) in the lab
  openssh-server openssh-client               # sshd in front of each lab switch, ssh-keygen (IOS-like CLI: python3)
  snmpd snmp                                  # net-snmp agent of the SNMP lab switch (Q-BRIDGE script: python3), client tools
  python3 openssl                             # hostile-packet senders, small test peers; crypt checks
  busybox-static isc-dhcp-client isc-dhcp-relay   # DHCP clients (udhcpc, dhclient) and a relay
  tftp-hpa atftp                              # TFTP clients (atftp speaks RFC 7440 windowsize)
  qemu-system-x86 ipxe-qemu ovmf              # a PXE guest: QEMU with its iPXE NIC ROM (TCG), BIOS and UEFI
  qemu-block-extra                            # QEMU's iSCSI initiator: nhn agent hands VM disks to QEMU through it
  tgt open-iscsi e2fsprogs cpio kmod          # iSCSI target, iscsistart, LUN images, depmod
  zstd xz-utils                               # the initrd's install mode unpacks tar.zst/tar.xz images
  tcpdump                                     # 802.1Q tags seen on the wire (switch lab)
  ipmitool python3-venv                       # the IPMI power driver's client; a venv for the BMC emulators
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "tests/run.sh: not root and no sudo; cannot install ${missing[*]} (network tests will skip)" >&2
      missing=()
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
      $SUDO chmod +x /usr/sbin/policy-rc.d
      created_policy=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
    [ -n "$created_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  fi
fi

# The power-driver tests' BMCs (pyghmi's IPMI BMC, sushy-tools' Redfish emulator) come from
# PyPI, into a venv: Debian's python refuses system-wide pip installs (PEP 668). Pinned to the
# versions the tests were written against; NHN_BMC_VENV puts the venv elsewhere.
BMC_VENV="${NHN_BMC_VENV:-target/venv-bmc}"
if ! "$BMC_VENV/bin/python" -c 'import pyghmi, sushy_tools, bcrypt' 2>/dev/null; then
  echo "tests/run.sh: installing pyghmi and sushy-tools into $BMC_VENV"
  if ! { /usr/bin/python3 -m venv "$BMC_VENV" &&
         "$BMC_VENV/bin/pip" install -q --disable-pip-version-check \
           pyghmi==1.6.19 sushy-tools==2.2.0 >/dev/null; }; then
    echo "tests/run.sh: cannot set up $BMC_VENV (the power tests will skip, or fail under CI=true)" >&2
  fi
fi
if [ -d "$BMC_VENV" ]; then
  NHN_BMC_PYTHON="$(cd "$BMC_VENV" && pwd)/bin/python"
  export NHN_BMC_PYTHON
fi

# The diskless-boot tests boot Debian's kernel (downloaded, not installed) in QEMU.
if [ "$(id -u)" -eq 0 ] || [ -n "${CI:-}" ]; then
  echo "tests/run.sh: kernel for the boot tests: $(tests/fetch-kernel.sh)"
fi

echo "tests/run.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "tests/run.sh: cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "tests/run.sh: cargo test"
cargo test --locked
