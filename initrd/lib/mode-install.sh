# Mode "install" (restoreImage, carried out inside the VM): make a fresh ext4 on the root disk,
# unpack an image archive onto it from the payload disk, point the image's fstab at the new
# filesystem, power off. The agent learns the outcome from the report channel.
#
# Kernel command line, besides nhn.root= and nhn.rootdev= (the disk to install on; a device path,
# since a LABEL= or UUID= does not exist before the filesystem is made):
#   nhn.payload=disk              the archive is the block device whose serial is nhn-payload (a
#                                 read-only virtio disk backed by the archive file as it is)
#   nhn.payload.sha256=<64 hex>   the archive's SHA-256, lowercase; checked while it streams
#   nhn.payload.bytes=<n>         the archive's size in bytes: exactly these are read (the disk
#                                 is the file rounded up to whole sectors)
#   nhn.report=/dev/ttyS1         where the NHN-REPORT lines go
#
# Report lines, one per line, in this order:
#   NHN-REPORT progress <done> <total>    about every second while the archive streams (bytes
#                                         read from the payload disk), and done=total at its end
#   NHN-REPORT ok uuid=<uuid> sha256=<hex> bytes=<n>
# or, on any failure (then DISK1 holds no filesystem: its first MiBs are zeroed once mke2fs ran):
#   NHN-REPORT failed <step>: <reason>

INSTALL_RUN=/run/nhn-install
# Debian's static busybox runs its own applet for a bare command name whatever PATH says
# (FEATURE_SH_STANDALONE): the real tools are called by path. busybox's tar has no xattrs and
# its mke2fs no ext4. gzip is busybox's own.
TAR=/bin/tar
MKE2FS=/sbin/mke2fs
ZSTD=/usr/bin/zstd
XZ=/usr/bin/xz

# bad_arg WHY: a malformed or missing argument; the agent built the line, so say which.
bad_arg() {
    fail "check the nhn.mode=install arguments" "$1"
}

mode_check() {
    payload_args bad_arg
    for tool in $TAR $MKE2FS $ZSTD $XZ; do
        [ -x "$tool" ] || bad_arg "$tool is missing from this initrd (rebuild it with nhn initrd build)"
    done
    rootdev=$(arg nhn.rootdev "")
    case "$rootdev" in
        "" | /dev/*) ;;
        *) bad_arg "nhn.rootdev=$rootdev: install needs a device path (no filesystem has a label or UUID yet)" ;;
    esac
}

mode_run() {
    step "find the payload disk" find_payload
    step "make the filesystem" make_fs
    step "unpack the image" unpack_image
    step "write fstab" write_fstab
    step "finish the install" finish_install
}

# PAYLOAD_DEV (common.sh), then FORMAT and DECOMPRESS: the archive's compression (by its magic
# bytes) and decompressor.
find_payload() {
    payload_disk "find the payload disk"
    magic=$(head -c 6 "$PAYLOAD_DEV" | od -An -tx1 | tr -d ' \n')
    case "$magic" in
        28b52ffd*) FORMAT=zstd DECOMPRESS="$ZSTD -d -c -q" ;;
        1f8b*) FORMAT=gzip DECOMPRESS="gzip -d -c" ;;
        fd377a585a00) FORMAT=xz DECOMPRESS="$XZ -d -c" ;;
        *) fail "find the payload disk" "$PAYLOAD_DEV does not start like a tar.zst, tar.gz or tar.xz (first bytes: ${magic:-unreadable})" ;;
    esac
    log "payload $PAYLOAD_DEV: $PAYLOAD_BYTES bytes of $FORMAT on a $have-byte disk"
}

# After mke2fs a failure must not leave a half-installed disk that a later boot would take for
# a system: unmount and zero the start of the disk (ext4's superblock is 1 KiB in; 4 MiB also
# covers partition tables and other filesystems' signatures).
wipe_root() {
    stop_progress
    umount /newroot 2>/dev/null
    if dd if=/dev/zero of="$ROOT_DEV" bs=1M count=4 conv=fsync 2>/dev/null; then
        log "zeroed the start of $ROOT_DEV: nothing half-installed can boot"
    else
        log "could not zero the start of $ROOT_DEV"
    fi
}

make_fs() {
    UUID=$(cat /proc/sys/kernel/random/uuid)
    ON_FAIL=wipe_root
    $MKE2FS -t ext4 -F -q -U "$UUID" "$ROOT_DEV" </dev/null ||
        fail "make the filesystem" "mke2fs -t ext4 on $ROOT_DEV failed"
    mount -t ext4 "$ROOT_DEV" /newroot ||
        fail "make the filesystem" "cannot mount the new ext4 on $ROOT_DEV"
    log "ext4 $UUID on $ROOT_DEV ($(uptime_s)s)"
}

# Every second: bytes read from the payload disk so far (the block layer's sector count,
# read-ahead included, hence the cap).
progress_loop() {
    while :; do
        set -- $(cat "/sys/block/$PAYLOAD_NAME/stat")
        n=$(($3 * 512))
        [ "$n" -le "$PAYLOAD_BYTES" ] || n=$PAYLOAD_BYTES
        report progress "$n" "$PAYLOAD_BYTES"
        sleep 1
    done
}

stop_progress() {
    [ -n "$PROGRESS_PID" ] || return 0
    kill "$PROGRESS_PID" 2>/dev/null
    wait "$PROGRESS_PID" 2>/dev/null
    PROGRESS_PID=
}

# status NAME: the exit status a pipeline stage left in $INSTALL_RUN/NAME.status ("none" if the
# stage never got to write it).
status() {
    cat "$INSTALL_RUN/$1.status" 2>/dev/null || echo none
}

# One pass over the archive: read exactly nhn.payload.bytes from the payload disk, hash them on
# the side (tee into a fifo that sha256sum reads) and decompress them into tar. busybox sh has
# no PIPESTATUS: every stage writes its exit status to a file. tar stops at the archive's end
# marker; the rest is drained so that the hash covers every byte.
unpack_image() {
    rm -rf "$INSTALL_RUN"
    mkdir -p "$INSTALL_RUN"
    r=$INSTALL_RUN
    mkfifo "$r/sum.fifo"
    sha256sum <"$r/sum.fifo" >"$r/sum" &
    sum_pid=$!
    progress_loop &
    PROGRESS_PID=$!
    started=$(uptime_s)
    { head -c "$PAYLOAD_BYTES" "$PAYLOAD_DEV" 2>"$r/read.err"; echo $? >"$r/read.status"; } |
        { tee "$r/sum.fifo"; echo $? >"$r/tee.status"; } |
        { $DECOMPRESS 2>"$r/decompress.err"; echo $? >"$r/decompress.status"; } |
        {
            $TAR -x -p --numeric-owner --xattrs --xattrs-include='*' -C /newroot -f - 2>"$r/tar.err"
            st=$?
            echo $st >"$r/tar.status"
            [ $st -ne 0 ] || cat >/dev/null
        }
    wait "$sum_pid"
    stop_progress
    got=$(cut -d' ' -f1 "$r/sum" 2>/dev/null)
    read_st=$(status read)
    tee_st=$(status tee)
    dec_st=$(status decompress)
    tar_st=$(status tar)
    log "stream: read $read_st, tee $tee_st, $FORMAT $dec_st, tar $tar_st; sha256 $got ($started-$(uptime_s)s)"
    # A stage killed by SIGPIPE (141) only saw a later stage quit: name the cause, not that.
    if [ "$read_st" != 0 ] && [ "$read_st" != 141 ]; then
        fail "unpack the image" "reading $PAYLOAD_DEV failed (I/O error): $(tail -n 1 "$r/read.err")"
    fi
    if [ "$read_st" = 0 ] && [ "$tee_st" = 0 ] && [ "$got" != "$PAYLOAD_SHA256" ]; then
        fail "unpack the image" "sha256 mismatch: the payload's SHA-256 is ${got:-unknown}, nhn.payload.sha256 is $PAYLOAD_SHA256"
    fi
    if [ "$dec_st" != 0 ]; then
        fail "unpack the image" "$FORMAT failed (status $dec_st), the archive is corrupt: $(tail -n 1 "$r/decompress.err")"
    fi
    if [ "$tar_st" != 0 ]; then
        head -n 20 "$r/tar.err"
        if grep -q "No space left on device" "$r/tar.err"; then
            fail "unpack the image" "the image does not fit on $ROOT_DEV: no space left on device"
        fi
        fail "unpack the image" "tar failed (status $tar_st): $(tail -n 1 "$r/tar.err")"
    fi
    if [ "$read_st" != 0 ] || [ "$tee_st" != 0 ] || [ "$got" != "$PAYLOAD_SHA256" ]; then
        fail "unpack the image" "the stream broke (read $read_st, tee $tee_st, sha256 ${got:-unknown})"
    fi
    report progress "$PAYLOAD_BYTES" "$PAYLOAD_BYTES"
    log "image unpacked, sha256 verified ($(uptime_s)s)"
}

# The image's fstab with its root line (whatever mounts /) replaced by the new filesystem's
# UUID; its other lines stay. Without a root line the UUID line is added.
write_fstab() {
    f=/newroot/etc/fstab
    mkdir -p /newroot/etc || fail "write fstab" "cannot make /etc on the new root"
    # An absolute symlink would point into the initrd here: read a plain file only, and
    # replace whatever is there by rename.
    old=/dev/null
    [ -f "$f" ] && [ ! -L "$f" ] && old=$f
    awk -v root="UUID=$UUID / ext4 defaults 0 1" '
        $1 !~ /^#/ && $2 == "/" { if (!done) print root; done = 1; next }
        { print }
        END { if (!done) print root }
    ' "$old" >"$f.nhn-new" || fail "write fstab" "cannot write $f"
    chmod 644 "$f.nhn-new"
    mv -f "$f.nhn-new" "$f" || fail "write fstab" "cannot replace $f"
    log "fstab: root is UUID=$UUID"
}

finish_install() {
    sync
    umount /newroot || fail "finish the install" "cannot unmount $ROOT_DEV"
    ON_FAIL=
    report "ok uuid=$UUID sha256=$PAYLOAD_SHA256 bytes=$PAYLOAD_BYTES"
    log "installed: ext4 $UUID on $ROOT_DEV; powering off ($(uptime_s)s)"
    poweroff -f
    sleep 86400
}
