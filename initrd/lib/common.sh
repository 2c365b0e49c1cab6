# Shared helpers of the nhn initrd (sourced by /init and the mode scripts).

log() { echo "nhn-initrd: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# arg NAME DEFAULT: the value of NAME=... on the kernel command line.
arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1"=*) echo "${word#*=}"; return ;; esac
    done
    echo "$2"
}

# report WORDS...: one "NHN-REPORT <words>" line on the report channel nhn.report= (a serial
# port the agent reads, e.g. /dev/ttyS1), if there is one. Never on the console: the agent
# parses it. The first call makes the port raw (no \r added to \n); the port keeps that setting
# across opens. Each line opens and closes the port, and a serial port's last close waits until
# the line has gone out: a poweroff right after a report does not lose it.
report() {
    REPORT_DEV=${REPORT_DEV-$(arg nhn.report "")}
    [ -n "$REPORT_DEV" ] || return 0
    if [ -z "$REPORT_RAW" ]; then
        stty -F "$REPORT_DEV" raw -echo 2>/dev/null
        REPORT_RAW=1
    fi
    printf 'NHN-REPORT %s\n' "$*" > "$REPORT_DEV" 2>/dev/null
}

# fail STEP WHY: say what failed (console and report channel), run the mode's $ON_FAIL cleanup
# (install: wipe the half-made disk), then rescue shell (nhn.rescue=1) or power off; never
# panic-loop.
fail() {
    echo "nhn-initrd: FAILED at step '$1': $2"
    echo "nhn-initrd: STEP FAILED: $1"
    if [ -n "$ON_FAIL" ]; then
        # Once only: a failure inside the cleanup must not loop back into it.
        cleanup=$ON_FAIL
        ON_FAIL=
        $cleanup
    fi
    # The agent reads one line per report: no newlines inside.
    report "failed $(printf '%s' "$1: $2" | tr '\r\n' '  ')"
    if [ "$(arg nhn.rescue 0)" = 1 ]; then
        echo "nhn-initrd: rescue shell (exit to power off)"
        sh
    fi
    poweroff -f
    sleep 86400
}

# payload_args FAIL: the payload arguments of the offline modes (install, configure), checked
# strictly; FAIL WHY is called for a bad one. Sets PAYLOAD_SHA256 and PAYLOAD_BYTES.
#   nhn.payload=disk              the payload is the block device whose serial is nhn-payload
#   nhn.payload.sha256=<64 hex>   its SHA-256, lowercase
#   nhn.payload.bytes=<n>         its size: exactly these bytes are read (the disk is the file
#                                 rounded up to whole sectors)
payload_args() {
    payload=$(arg nhn.payload "")
    [ "$payload" = disk ] || $1 "nhn.payload='$payload': only nhn.payload=disk is known"
    PAYLOAD_SHA256=$(arg nhn.payload.sha256 "")
    case "$PAYLOAD_SHA256" in
        *[!0-9a-f]* | "") $1 "nhn.payload.sha256='$PAYLOAD_SHA256' is not 64 lowercase hex digits" ;;
    esac
    [ ${#PAYLOAD_SHA256} -eq 64 ] ||
        $1 "nhn.payload.sha256='$PAYLOAD_SHA256' is not 64 lowercase hex digits"
    PAYLOAD_BYTES=$(arg nhn.payload.bytes "")
    # Digits without a leading zero (no octal surprises in $(( )), no empty payload), and at
    # most 15 of them so that shell arithmetic cannot overflow.
    case "$PAYLOAD_BYTES" in
        *[!0-9]* | "" | 0*) $1 "nhn.payload.bytes='$PAYLOAD_BYTES' is not a positive byte count" ;;
    esac
    [ ${#PAYLOAD_BYTES} -le 15 ] || $1 "nhn.payload.bytes=$PAYLOAD_BYTES is too large"
}

# payload_disk STEP: PAYLOAD_NAME and PAYLOAD_DEV, the disk whose serial is nhn-payload (found
# by serial: its name depends on the order the hypervisor attached the disks in), which must
# not be the root disk and must hold PAYLOAD_BYTES.
payload_disk() {
    i=0
    while [ $i -lt 100 ] && [ -z "$PAYLOAD_NAME" ]; do
        for s in /sys/block/*/serial; do
            [ -e "$s" ] && [ "$(cat "$s")" = nhn-payload ] || continue
            d=${s%/serial}
            PAYLOAD_NAME=${d##*/}
        done
        [ -n "$PAYLOAD_NAME" ] || sleep 0.1
        i=$((i + 1))
    done
    [ -n "$PAYLOAD_NAME" ] ||
        fail "$1" "no disk with serial nhn-payload (is the payload attached to the VM?)"
    PAYLOAD_DEV=/dev/$PAYLOAD_NAME
    [ -b "$PAYLOAD_DEV" ] || fail "$1" "$PAYLOAD_DEV is not a block device"
    [ "$(readlink -f "$ROOT_DEV")" != "$PAYLOAD_DEV" ] ||
        fail "$1" "the payload disk $PAYLOAD_DEV is the root disk $ROOT_DEV"
    # The hypervisor rounds the file up to whole 512-byte sectors (reading zeros past its end);
    # a disk smaller than the payload means the tail is missing.
    have=$(($(cat "/sys/block/$PAYLOAD_NAME/size") * 512))
    [ "$have" -ge "$PAYLOAD_BYTES" ] ||
        fail "$1" "$PAYLOAD_DEV has $have bytes, fewer than nhn.payload.bytes=$PAYLOAD_BYTES (pad the file to a multiple of 512 bytes)"
}

# step NAME FUNCTION: run a step, timing it; a failing function has already called fail.
step() {
    log "step: $1 ($(uptime_s)s)"
    "$2" || fail "$1" "see the messages above"
}

setup_pseudo_fs() {
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    mount -t devtmpfs dev /dev
    mkdir -p /run /tmp /newroot
}

load_modules() {
    for m in $(cat /etc/nhn/modules.order); do
        insmod "/lib/modules/$m" 2>/dev/null || log "module $m did not load (fine if the hardware lacks it)"
    done
}

# The NIC named by BOOTIF's MAC, else the first non-loopback interface with a MAC.
bring_up_nic() {
    want=$(arg BOOTIF "")
    want=$(echo "${want#01-}" | tr '-' ':' | tr 'A-F' 'a-f')
    i=0
    while [ $i -lt 50 ]; do
        for dev in /sys/class/net/*; do
            name=${dev##*/}
            [ "$name" = lo ] && continue
            mac=$(cat "$dev/address" 2>/dev/null)
            if [ -z "$want" ] || [ "$mac" = "$want" ]; then
                NIC=$name
                ip link set lo up
                ip link set "$NIC" up || return 1
                log "boot NIC $NIC ($mac)"
                return 0
            fi
        done
        sleep 0.1
        i=$((i + 1))
    done
    fail "bring up the boot NIC" "no network interface${want:+ with MAC $want}"
}

dhcp() {
    udhcpc -i "$NIC" -q -n -t 10 -T 1 -O rootpath -O 203 -s /lib/nhn/udhcpc.script ||
        fail "DHCP" "no DHCP answer on $NIC"
    . /tmp/dhcp.env
    log "DHCP: $ip/$mask via ${router:-none} ($(uptime_s)s)"
}

# ISCSI_* from nhn.root= or DHCP option 17, and the initiator from nhn.initiator= or option 203.
find_root() {
    root=$(arg nhn.root "$rootpath")
    case "$root" in
        iscsi:*) ;;
        "") fail "find the iSCSI root" "no root-path from DHCP (option 17) and no nhn.root=" ;;
        *) fail "find the iSCSI root" "root-path '$root' is not iscsi:<server>:<proto>:<port>:<lun>:<target>" ;;
    esac
    rp=${root#iscsi:}
    ISCSI_SERVER=${rp%%:*}; rp=${rp#*:}
    rp=${rp#*:}                         # protocol (empty = TCP)
    ISCSI_PORT=${rp%%:*}; rp=${rp#*:}
    ISCSI_LUN=${rp%%:*}
    ISCSI_TARGET=${rp#*:}
    ISCSI_INITIATOR=$(arg nhn.initiator "$initiator")
    [ -n "$ISCSI_INITIATOR" ] || fail "find the iSCSI root" "no initiator name (DHCP option 203 or nhn.initiator=)"
    log "root: target $ISCSI_TARGET lun ${ISCSI_LUN:-0} at $ISCSI_SERVER:${ISCSI_PORT:-3260} as $ISCSI_INITIATOR"
}

# nhn.storage=<vlan>:<ip>/<len>: a VLAN interface on the boot NIC for the iSCSI traffic (the
# storage network is tagged on the machine's edge port; the boot network is its native VLAN).
storage_vlan() {
    spec=$(arg nhn.storage "")
    [ -n "$spec" ] || return 0
    vlan=${spec%%:*}
    addr=${spec#*:}
    case "$vlan" in *[!0-9]*|"") fail "join the storage VLAN" "nhn.storage=$spec: VLAN '$vlan' is not a number" ;; esac
    ip link add link "$NIC" name "$NIC.$vlan" type vlan id "$vlan" ||
        fail "join the storage VLAN" "cannot make $NIC.$vlan (is the 8021q module in the initrd?)"
    ip addr add "$addr" dev "$NIC.$vlan" || fail "join the storage VLAN" "cannot add $addr to $NIC.$vlan"
    ip link set "$NIC.$vlan" up
    log "storage VLAN $vlan: $addr on $NIC.$vlan"
}

# Boot secrets (the target's CHAP account), fetched once from the one-time URL nhn.secrets=.
# Without nhn.secrets= there are none (the target has no CHAP). Nothing here is ever printed.
fetch_secrets() {
    url=$(arg nhn.secrets "")
    [ -n "$url" ] || return 0
    i=0
    while ! wget -q -O /run/nhn-secrets "$url" 2>/tmp/wget.err; do
        i=$((i + 1))
        # A spent token (410) or a wrong address (403) will not get better: say so at once.
        if grep -q -e " 403 " -e " 404 " -e " 410 " /tmp/wget.err || [ $i -ge 5 ]; then
            fail "fetch boot secrets" "$(head -c 200 /tmp/wget.err) (the token is one-time: reboot the machine for a new one)"
        fi
        sleep 1
    done
    while IFS='=' read -r key value; do
        case "$value" in *[!A-Za-z0-9.:-]*) fail "fetch boot secrets" "the bundle has a malformed $key" ;; esac
        case "$key" in
            chap_user) ISCSI_USER=$value ;;
            chap_secret) ISCSI_SECRET=$value ;;
        esac
    done < /run/nhn-secrets
    rm -f /run/nhn-secrets
    [ -n "$ISCSI_USER" ] && [ -n "$ISCSI_SECRET" ] || fail "fetch boot secrets" "the bundle has no CHAP account"
    log "boot secrets fetched (CHAP user $ISCSI_USER)"
}

# iscsistart, retried with backoff: the target may still be coming up.
iscsi_login() {
    delay=1
    for attempt in 1 2 3 4; do
        if iscsistart -i "$ISCSI_INITIATOR" -t "$ISCSI_TARGET" -g 1 -a "$ISCSI_SERVER" -p "${ISCSI_PORT:-3260}" \
            ${ISCSI_USER:+-u "$ISCSI_USER" -w "$ISCSI_SECRET"}; then
            log "iSCSI login ok ($(uptime_s)s)"
            return 0
        fi
        log "iSCSI login attempt $attempt failed; retrying in ${delay}s"
        sleep $delay
        delay=$((delay * 2))
    done
    fail "iSCSI login" "iscsistart could not log into $ISCSI_TARGET at $ISCSI_SERVER (wrong target, an ACL refuses $ISCSI_INITIATOR${ISCSI_USER:+, or CHAP user $ISCSI_USER is refused})"
}

# The root disk: the one named by nhn.rootdev=LABEL=...|UUID=... (a filesystem on the LUN), else
# the SCSI disk whose LUN matches the root-path.
find_disk() {
    want=$(arg nhn.rootdev "")
    i=0
    while [ $i -lt 100 ]; do
        if [ -n "$want" ]; then
            if dev=$(findfs "$want" 2>/dev/null); then
                ROOT_DEV=$dev
                log "root disk $ROOT_DEV ($want)"
                return 0
            fi
        else
            for d in /sys/block/sd*; do
                [ -e "$d" ] || continue
                hctl=$(basename "$(readlink -f "$d/device")")
                if [ "${hctl##*:}" = "${ISCSI_LUN:-0}" ]; then
                    ROOT_DEV=/dev/${d##*/}
                    log "root disk $ROOT_DEV (SCSI $hctl)"
                    return 0
                fi
            done
        fi
        sleep 0.1
        i=$((i + 1))
    done
    fail "find the root disk" "no ${want:-SCSI disk with LUN ${ISCSI_LUN:-0}} appeared after login"
}

# A local root disk (nhn.root=disk): nhn.rootdev= as a device path, LABEL= or UUID=.
find_local_disk() {
    want=$(arg nhn.rootdev /dev/vda)
    i=0
    while [ $i -lt 100 ]; do
        case "$want" in
            /dev/*) [ -b "$want" ] && ROOT_DEV=$want ;;
            *) ROOT_DEV=$(findfs "$want" 2>/dev/null) ;;
        esac
        if [ -n "$ROOT_DEV" ]; then
            log "root disk $ROOT_DEV ($want)"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    fail "find the root disk" "no disk $want appeared (is DISK1 attached to the VM?)"
}

mount_root() {
    fstype=$(arg nhn.rootfstype "")
    mount ${fstype:+-t "$fstype"} "$ROOT_DEV" /newroot || fail "mount the root filesystem" "cannot mount $ROOT_DEV"
    log "root mounted ($(uptime_s)s)"
}
