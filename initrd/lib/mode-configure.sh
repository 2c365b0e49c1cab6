# Boot mode "configure" (the Init* methods): apply one method's settings to the root
# filesystem mounted on /newroot, in the layout of the image's family, then report and power
# off. The settings come as a bundle on the payload disk (serial nhn-payload): a tar of one
# file per argument, written by nhn agent. Every value is read from its file as data, never
# evaluated, so quotes, $() and newlines land byte for byte.
#
# Everything a method needs is checked before anything is written, and every file is written
# beside its target and renamed over it: a setting the image cannot take (an unknown user, no
# iptables) fails the request and leaves the disk as it was.

B=/run/bundle

# val NAME [DEFAULT]: the argument NAME as given (DEFAULT if the bundle has none).
val() {
    if [ -f "$B/$1" ]; then cat "$B/$1"; else printf '%s' "$2"; fi
}
has() { [ -f "$B/$1" ]; }

# cfail WHY: the configure step failed (nothing was written).
cfail() { fail "configure" "$*"; }

mode_check() {
    payload_args configure_arg
}

# configure_arg WHY: a malformed or missing argument (the agent built the line).
configure_arg() {
    fail "check the nhn.mode=configure arguments" "$1"
}

mode_run() {
    step "read the settings" read_bundle
    step "mount the root filesystem" mount_root
    step "find the image's layout" find_layout
    case "$METHOD" in
        setIpAddress) step "setIpAddress" set_ip_address ;;
        unsetIpAddress) step "unsetIpAddress" unset_ip_address ;;
        setNetwork) step "setNetwork" set_network ;;
        setPassword) step "setPassword" set_password ;;
        setSshKey) step "setSshKey" set_ssh_key ;;
        setIptables) step "setIptables" set_iptables ;;
        setSshdConfig) step "setSshdConfig" set_sshd_config ;;
        writeFile) step "writeFile" write_file ;;
        *) cfail "unknown method $METHOD" ;;
    esac
    step "finish" finish_configure
}

# The bundle from the payload disk, checked against its SHA-256, unpacked into $B (busybox
# tar: the bundle is a plain ustar of regular files that nhn agent wrote).
read_bundle() {
    payload_disk "read the settings"
    mkdir -p "$B"
    head -c "$PAYLOAD_BYTES" "$PAYLOAD_DEV" >/run/bundle.tar ||
        fail "read the settings" "cannot read $PAYLOAD_DEV"
    got=$(sha256sum /run/bundle.tar | cut -d' ' -f1)
    [ "$got" = "$PAYLOAD_SHA256" ] ||
        fail "read the settings" "sha256 mismatch: the bundle's SHA-256 is $got, nhn.payload.sha256 is $PAYLOAD_SHA256"
    tar -x -f /run/bundle.tar -C "$B" || fail "read the settings" "the bundle does not unpack"
    rm -f /run/bundle.tar
    METHOD=$(val method)
    log "settings: $METHOD"
}

finish_configure() {
    sync
    umount /newroot || fail "finish" "cannot unmount the root filesystem"
    report "ok method=$METHOD layout=$LAYOUT"
    log "$METHOD applied ($LAYOUT layout); powering off ($(uptime_s)s)"
    poweroff -f
    sleep 86400
}

# The image's family from its /etc/os-release (ID, then ID_LIKE), read as text.
find_layout() {
    osr=/newroot/etc/os-release
    [ -f "$osr" ] || osr=/newroot/usr/lib/os-release
    [ -f "$osr" ] || cfail "the image has no /etc/os-release, so its file layout is unknown"
    ids=$(sed -n -e 's/^ID=//p' -e 's/^ID_LIKE=//p' "$osr" | tr -d '"'"'" | tr ' ' '\n')
    LAYOUT=""
    for id in $ids; do
        case "$id" in
            debian|ubuntu) LAYOUT=debian ;;
            rhel|centos|fedora|rocky|almalinux|ol) LAYOUT=redhat ;;
        esac
        [ -n "$LAYOUT" ] && break
    done
    [ -n "$LAYOUT" ] || cfail "the image's os-release names neither a Red Hat nor a Debian family ($(echo $ids))"
    log "layout: $LAYOUT"
}

# put TARGET MODE UID GID < content: written beside TARGET, then renamed over it.
put() {
    tmp="$1.nhn-new"
    cat > "$tmp" || { rm -f "$tmp"; cfail "cannot write $1"; }
    chown "$3:$4" "$tmp" && chmod "$2" "$tmp" || { rm -f "$tmp"; cfail "cannot set the owner or mode of $1"; }
    mv -f "$tmp" "$1" || { rm -f "$tmp"; cfail "cannot replace $1"; }
}

# keep TARGET DEFAULT_MODE DEFAULT_UID DEFAULT_GID: the mode and owner TARGET has, else the defaults.
keep() {
    if [ -e "$1" ]; then stat -c '%a %u %g' "$1"; else echo "$2 $3 $4"; fi
}

# passwd_field USER N: field N of USER's line in the image's /etc/passwd.
passwd_field() {
    U="$1" N="$2" awk -F: '$1 == ENVIRON["U"] { print $(ENVIRON["N"]); exit }' /newroot/etc/passwd
}

# group_id NAME: the image's gid of group NAME.
group_id() {
    G="$1" awk -F: '$1 == ENVIRON["G"] { print $3; exit }' /newroot/etc/group
}

need_user() {
    [ -n "$(passwd_field "$1" 1)" ] || cfail "the image has no user $1"
}

# NET1 -> eth0, NET2 -> eth1.
nic_name() {
    case "$1" in
        NET1) echo eth0 ;;
        NET2) echo eth1 ;;
        *) cfail "unknown device $1" ;;
    esac
}

# mask_to_prefix 255.255.255.0 -> 24
mask_to_prefix() {
    n=0
    for o in $(echo "$1" | tr '.' ' '); do
        case "$o" in
            255) n=$((n + 8)) ;; 254) n=$((n + 7)) ;; 252) n=$((n + 6)) ;; 248) n=$((n + 5)) ;;
            240) n=$((n + 4)) ;; 224) n=$((n + 3)) ;; 192) n=$((n + 2)) ;; 128) n=$((n + 1)) ;;
        esac
    done
    echo $n
}

# Debian ifupdown: /etc/network/interfaces without IF's stanzas (auto/allow-*/iface IF and
# the option lines under an iface IF).
interfaces_without() {
    IF="$1" awk '
        /^[ \t]*(auto|allow-[a-z]+)[ \t]/ {
            out = $1; keep = 0
            for (i = 2; i <= NF; i++) if ($i != ENVIRON["IF"]) { out = out " " $i; keep = 1 }
            if (keep) print out
            skip = 0; next
        }
        /^[ \t]*(iface|mapping|source|source-directory)[ \t]/ { skip = ($2 == ENVIRON["IF"]) }
        !skip { print }
    ' /newroot/etc/network/interfaces 2>/dev/null
}

networkd() { [ -d /newroot/etc/systemd/network ] && [ ! -f /newroot/etc/network/interfaces ]; }

set_ip_address() {
    ifc=$(nic_name "$(val device)")
    ip=$(val ipAddress)
    if has prefixLength; then prefix=$(val prefixLength); else prefix=$(mask_to_prefix "$(val netmask)"); fi
    gw=$(val gateway)
    case "$LAYOUT" in
        redhat)
            d=/newroot/etc/sysconfig/network-scripts
            [ -d "$d" ] || cfail "the image has no $d"
            set -- $(keep "$d/ifcfg-$ifc" 644 0 0)
            { echo "DEVICE=$ifc"; echo "BOOTPROTO=static"; echo "ONBOOT=yes"
              echo "IPADDR=$ip"; echo "PREFIX=$prefix"; [ -n "$gw" ] && echo "GATEWAY=$gw"; } |
                put "$d/ifcfg-$ifc" "$1" "$2" "$3" ;;
        debian)
            if networkd; then
                f=/newroot/etc/systemd/network/10-nhn-$ifc.network
                set -- $(keep "$f" 644 0 0)
                { echo "[Match]"; echo "Name=$ifc"; echo; echo "[Network]"; echo "Address=$ip/$prefix"
                  [ -n "$gw" ] && echo "Gateway=$gw"; } | put "$f" "$1" "$2" "$3"
            else
                f=/newroot/etc/network/interfaces
                [ -d /newroot/etc/network ] || cfail "the image has neither /etc/network nor /etc/systemd/network"
                set -- $(keep "$f" 644 0 0)
                { interfaces_without "$ifc"; echo; echo "auto $ifc"; echo "iface $ifc inet static"
                  echo "    address $ip/$prefix"; [ -n "$gw" ] && echo "    gateway $gw"; } |
                    put "$f" "$1" "$2" "$3"
            fi ;;
    esac
}

unset_ip_address() {
    ifc=$(nic_name "$(val device)")
    case "$LAYOUT" in
        redhat)
            d=/newroot/etc/sysconfig/network-scripts
            [ -d "$d" ] || cfail "the image has no $d"
            set -- $(keep "$d/ifcfg-$ifc" 644 0 0)
            printf 'DEVICE=%s\nBOOTPROTO=none\nONBOOT=no\n' "$ifc" | put "$d/ifcfg-$ifc" "$1" "$2" "$3" ;;
        debian)
            rm -f "/newroot/etc/systemd/network/10-nhn-$ifc.network"
            f=/newroot/etc/network/interfaces
            if [ -f "$f" ]; then
                set -- $(keep "$f" 644 0 0)
                interfaces_without "$ifc" | put "$f" "$1" "$2" "$3"
            fi ;;
    esac
}

set_network() {
    if has hostname; then
        h=$(val hostname)
        set -- $(keep /newroot/etc/hostname 644 0 0)
        echo "$h" | put /newroot/etc/hostname "$1" "$2" "$3"
        f=/newroot/etc/sysconfig/network
        if [ "$LAYOUT" = redhat ] && [ -f "$f" ]; then
            set -- $(keep "$f" 644 0 0)
            { grep -v '^HOSTNAME=' "$f"; echo "HOSTNAME=$h"; } | put "$f" "$1" "$2" "$3"
        fi
    fi
    if has nameservers || has searchDomains; then
        f=/newroot/etc/resolv.conf
        [ -L "$f" ] && rm -f "$f"    # systemd-resolved's link: a static file replaces it
        set -- $(keep "$f" 644 0 0)
        { has searchDomains && echo "search $(val searchDomains | tr '\n' ' ')"
          val nameservers | sed 's/^/nameserver /'; } | put "$f" "$1" "$2" "$3"
    fi
    if has defaultGateway; then
        gw=$(val defaultGateway)
        dev=$(nic_name "$(val gatewayDevice NET1)")
        case "$LAYOUT" in
            redhat)
                f=/newroot/etc/sysconfig/network
                set -- $(keep "$f" 644 0 0)
                { grep -v -e '^GATEWAY=' -e '^GATEWAYDEV=' "$f" 2>/dev/null
                  echo "GATEWAY=$gw"; echo "GATEWAYDEV=$dev"; } | put "$f" "$1" "$2" "$3" ;;
            debian)
                if networkd; then
                    f=/newroot/etc/systemd/network/10-nhn-$dev.network
                    [ -f "$f" ] || cfail "$dev has no address set (setIpAddress first)"
                    set -- $(keep "$f" 644 0 0)
                    { grep -v '^Gateway=' "$f"; echo "Gateway=$gw"; } | put "$f" "$1" "$2" "$3"
                else
                    f=/newroot/etc/network/interfaces
                    grep -q "^iface $dev inet static" "$f" 2>/dev/null || cfail "$dev has no static address (setIpAddress first)"
                    set -- $(keep "$f" 644 0 0)
                    DEV="$dev" GW="$gw" awk '
                        /^[ \t]*gateway[ \t]/ && inside { next }
                        /^[ \t]*(iface|auto|allow-[a-z]+|mapping|source)[ \t]/ {
                            inside = ($1 == "iface" && $2 == ENVIRON["DEV"])
                            print
                            if (inside) print "    gateway " ENVIRON["GW"]
                            next
                        }
                        { print }
                    ' "$f" | put "$f" "$1" "$2" "$3"
                fi ;;
        esac
    fi
}

set_password() {
    user=$(val user root)
    need_user "$user"
    f=/newroot/etc/shadow
    [ -f "$f" ] || cfail "the image has no /etc/shadow"
    grep -q "^$user:" "$f" || cfail "user $user has no line in /etc/shadow"
    # What the family's own tools leave: Debian 0640 root:shadow, Red Hat 0000 root:root.
    case "$LAYOUT" in
        debian) shadow_gid=$(group_id shadow); set -- 640 0 "${shadow_gid:-0}" ;;
        redhat) set -- 000 0 0 ;;
    esac
    U="$user" H="$(val passwordHash)" awk -F: 'BEGIN { OFS = ":" }
        $1 == ENVIRON["U"] { $2 = ENVIRON["H"]; $3 = int(systime() / 86400) } { print }' "$f" |
        put "$f" "$1" "$2" "$3"
}

set_ssh_key() {
    user=$(val user root)
    need_user "$user"
    home=/newroot$(passwd_field "$user" 6)
    uid=$(passwd_field "$user" 3)
    gid=$(passwd_field "$user" 4)
    [ -d "$home" ] || cfail "the home directory $(passwd_field "$user" 6) of $user does not exist"
    mkdir -p "$home/.ssh" && chown "$uid:$gid" "$home/.ssh" && chmod 700 "$home/.ssh" ||
        cfail "cannot make $home/.ssh"
    f=$home/.ssh/authorized_keys
    { [ "$(val append false)" = true ] && [ -f "$f" ] && cat "$f"; val publicKeys; } |
        put "$f" 600 "$uid" "$gid"
}

set_iptables() {
    found=""
    for p in usr/sbin/iptables-restore sbin/iptables-restore usr/sbin/iptables sbin/iptables; do
        [ -e "/newroot/$p" ] && found=$p
    done
    [ -n "$found" ] || cfail "the image has no iptables"
    case "$LAYOUT" in
        redhat) v4=/newroot/etc/sysconfig/iptables; v6=/newroot/etc/sysconfig/ip6tables; d=/newroot/etc/sysconfig ;;
        debian) v4=/newroot/etc/iptables/rules.v4; v6=/newroot/etc/iptables/rules.v6; d=/newroot/etc/iptables ;;
    esac
    mkdir -p "$d" || cfail "cannot make $d"
    set -- $(keep "$v4" 600 0 0)
    val rules | put "$v4" "$1" "$2" "$3"
    if has ip6Rules; then
        set -- $(keep "$v6" 600 0 0)
        val ip6Rules | put "$v6" "$1" "$2" "$3"
    fi
}

set_sshd_config() {
    f=/newroot/etc/ssh/sshd_config
    [ -f "$f" ] || cfail "the image has no /etc/ssh/sshd_config"
    set -- $(keep "$f" 644 0 0)
    cp "$f" /run/sshd_config
    for key in PermitRootLogin PasswordAuthentication Port; do
        case "$key" in
            PermitRootLogin) arg=permitRootLogin ;;
            PasswordAuthentication) arg=passwordAuthentication ;;
            Port) arg=port ;;
        esac
        has "$arg" || continue
        v=$(val "$arg")
        case "$v" in true) v=yes ;; false) v=no ;; esac
        # The first occurrence counts for sshd: ours goes first, the image's own are dropped.
        K="$key" V="$v" awk 'BEGIN { print ENVIRON["K"] " " ENVIRON["V"] }
            tolower($1) != tolower(ENVIRON["K"]) { print }' /run/sshd_config > /run/sshd_config.new &&
            mv /run/sshd_config.new /run/sshd_config
    done
    put "$f" "$1" "$2" "$3" < /run/sshd_config
}

write_file() {
    path=$(val path)
    case "$path" in
        /*) ;;
        *) cfail "path $path is not absolute" ;;
    esac
    case "$path" in */../*|*/..|*/./*) cfail "path $path is not plain" ;; esac
    owner=$(val owner root)
    group=$(val group root)
    need_user "$owner"
    gid=$(group_id "$group")
    [ -n "$gid" ] || cfail "the image has no group $group"
    uid=$(passwd_field "$owner" 3)
    mode=$(printf '%o' "$(val mode 420)")
    dir=/newroot${path%/*}
    [ -L "$dir" ] && cfail "the folder of $path is a symbolic link"
    mkdir -p "$dir" || cfail "cannot make the folder of $path"
    [ -L "/newroot$path" ] && cfail "$path is a symbolic link"
    put "/newroot$path" "$mode" "$uid" "$gid" < "$B/content"
}
