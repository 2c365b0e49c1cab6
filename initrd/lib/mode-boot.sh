# Mode "boot": mount the root and hand the machine over to the system on it.

mode_check() {
    return 0
}

mode_run() {
    step "mount the root filesystem" mount_root
    init=$(arg nhn.init /sbin/init)
    [ -x "/newroot$init" ] || fail "switch_root" "$init is not executable on the root filesystem"
    log "switch_root to $init ($(uptime_s)s)"
    umount /proc /sys
    mount --move /dev /newroot/dev 2>/dev/null || umount /dev
    exec switch_root /newroot "$init"
}
