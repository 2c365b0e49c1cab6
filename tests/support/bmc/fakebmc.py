#!/usr/bin/env python3
"""Fake IPMI 2.0 BMC (RMCP+, "lanplus") for nhn's power-driver tests, on pyghmi's Bmc class.

The machine's "power" is a process: `power on` starts `sh -c CMD` in its own process group,
`power off` SIGKILLs the group, `power soft` sends SIGTERM and SIGKILL after --grace seconds,
`power reset`/`cycle` kill and start again, `power status` is "on" while the process lives.
`chassis bootdev X [options=persistent]` is remembered and handed to CMD as $BMC_BOOTDEV
(`network` for pxe, `hd`, `default`, ...); without `persistent` it holds for one power on.

Handlers never block: ipmitool retransmits after about a second and pyghmi runs a
retransmitted request again, so slow work (the soft-off grace) runs in a thread.
pyghmi speaks cipher suite 3 only: use `ipmitool -C 3`.

Events go to stdout, one per line: "<unix time> EVENT details".
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import pyghmi.ipmi.bmc as bmc


def log(*words):
    print('%.3f %s' % (time.time(), ' '.join(str(w) for w in words)), flush=True)


class ProcessBmc(bmc.Bmc):
    def __init__(self, authdata, port, address, cmd, grace):
        super().__init__(authdata, port=port, address=address)
        self.cmd = cmd
        self.grace = grace
        self.proc = None
        self.lock = threading.RLock()
        self.bootdevice = 'default'
        self.persistent = False

    def running(self):
        with self.lock:
            return self.proc is not None and self.proc.poll() is None

    def start(self):
        with self.lock:
            if self.running():
                return
            env = dict(os.environ, BMC_BOOTDEV=str(self.bootdevice))
            self.proc = subprocess.Popen(['/bin/sh', '-c', self.cmd], env=env,
                                         start_new_session=True, stdin=subprocess.DEVNULL)
            log('POWER-ON', 'pid=%d' % self.proc.pid, 'bootdev=%s' % self.bootdevice)
            if not self.persistent:
                self.bootdevice = 'default'

    def stop(self):
        with self.lock:
            if not self.running():
                return
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            log('POWER-OFF', 'pid=%d' % self.proc.pid)

    def soft_stop(self):
        with self.lock:
            if not self.running():
                return
            proc = self.proc
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            log('POWER-SOFT', 'pid=%d' % proc.pid)

        def reaper():
            try:
                proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                with self.lock:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log('POWER-OFF', 'pid=%d' % proc.pid)
        threading.Thread(target=reaper, daemon=True).start()

    # pyghmi's Bmc interface
    def get_power_state(self):
        return 'on' if self.running() else 'off'

    def is_active(self):
        return self.running()

    def power_on(self):
        self.start()
        return 0

    def power_off(self):
        self.stop()
        return 0

    def power_shutdown(self):
        self.soft_stop()
        return 0

    def power_reset(self):
        log('POWER-RESET')
        with self.lock:
            self.stop()
            self.start()
        return 0

    power_cycle = power_reset

    def get_boot_device(self):
        return self.bootdevice

    def set_boot_device(self, bootdevice):
        self.bootdevice = bootdevice
        log('BOOTDEV', bootdevice, 'persistent' if self.persistent else 'once')

    def set_system_boot_options(self, request, session):
        # parameter 5 (boot flags): data[1] bit 6 = persistent
        if request['data'][0] == 5 and len(request['data']) > 1:
            self.persistent = bool(request['data'][1] & 0x40)
        return super().set_system_boot_options(request, session)

    def cold_reset(self):
        log('MC-RESET-COLD (ignored)')
        return 0


def main():
    p = argparse.ArgumentParser(description='Fake IPMI BMC whose power is a process')
    p.add_argument('--address', default='::')
    p.add_argument('--port', type=int, default=623)
    p.add_argument('--user', default='admin')
    p.add_argument('--password', default='password')
    p.add_argument('--cmd', default='exec sleep 1000')
    p.add_argument('--grace', type=float, default=10.0,
                   help='seconds between SIGTERM and SIGKILL for "power soft"')
    args = p.parse_args()

    b = ProcessBmc({args.user: args.password}, args.port, args.address, args.cmd, args.grace)

    def bye(signum, frame):
        b.stop()
        log('EXIT', signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    log('LISTEN', '%s:%d' % (args.address, args.port), 'user=%s' % args.user)
    b.listen()


if __name__ == '__main__':
    main()
