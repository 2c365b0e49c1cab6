#!/usr/bin/env python3
"""A Redfish BMC for nhn's power-driver tests: sushy-tools' emulator with its fake driver,
one system whose power is a process.

  redfish_emu.py --address A --port P --user U --password W --state-dir DIR --cmd CMD
                 [--name node1] [--uuid UUID] [--ssl-certificate F --ssl-key F]

Writes its sushy-emulator config and a bcrypt htpasswd (HTTP Basic auth) into DIR, which also
holds the emulator's state (use a fresh one per test: sushy keeps power and boot settings
there). ResetType On/ForceOn start `sh -c CMD` (own process group); ForceOff SIGKILLs it;
GracefulShutdown sends SIGTERM and SIGKILL after FAKE_POWER_GRACE s (default 10);
ForceRestart/GracefulRestart/PowerCycle kill and start. PowerState is "On" while the process
runs. CMD sees the BootSourceOverrideTarget as $BMC_BOOTDEV (e.g. "Pxe") and the system name
as $BMC_NAME. FAKE_POWER_DELAY=S applies every change S seconds late, like slow hardware.
Events go to stdout: "<unix time> RESET name=... ResetType", "POWER-ON pid=...", ...
"""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import bcrypt
from sushy_tools import error
from sushy_tools.emulator import main as emu
from sushy_tools.emulator.resources.systems import fakedriver

DELAY = float(os.environ.get('FAKE_POWER_DELAY', '0'))
GRACE = float(os.environ.get('FAKE_POWER_GRACE', '10'))


def log(*words):
    print('%.3f %s' % (time.time(), ' '.join(str(w) for w in words)), flush=True)


class ProcessDriver(fakedriver.FakeDriver):
    procs = {}  # uuid -> Popen
    lock = threading.RLock()

    def _alive(self, uuid):
        with self.lock:
            p = self.procs.get(uuid)
            return p is not None and p.poll() is None

    def _start(self, system):
        with self.lock:
            if self._alive(system['uuid']):
                return
            bootdev = system.get('boot_device', 'Hdd')
            env = dict(os.environ, BMC_BOOTDEV=str(bootdev), BMC_NAME=system['name'])
            p = subprocess.Popen(['/bin/sh', '-c', system['cmd']], env=env,
                                 start_new_session=True, stdin=subprocess.DEVNULL)
            self.procs[system['uuid']] = p
            log('POWER-ON', 'name=%s' % system['name'], 'pid=%d' % p.pid, 'bootdev=%s' % bootdev)

    def _kill(self, system, graceful=False):
        with self.lock:
            p = self.procs.get(system['uuid'])
            if p is None or p.poll() is not None:
                return
            try:
                os.killpg(p.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            except ProcessLookupError:
                pass
            if not graceful:
                p.wait()
                log('POWER-OFF', 'name=%s' % system['name'], 'pid=%d' % p.pid)
                return
            log('POWER-SOFT', 'name=%s' % system['name'], 'pid=%d' % p.pid)

        def reaper():
            try:
                p.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                with self.lock:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            log('POWER-OFF', 'name=%s' % system['name'], 'pid=%d' % p.pid)
        threading.Thread(target=reaper, daemon=True).start()

    def get_power_state(self, identity):
        system = self._get(identity)
        return 'On' if self._alive(system['uuid']) else 'Off'

    def set_power_state(self, identity, state):
        system = self._get(identity)
        if state in ('On', 'ForceOn'):
            def action():
                self._start(self._get(identity))
        elif state == 'ForceOff':
            def action():
                self._kill(self._get(identity))
        elif state == 'GracefulShutdown':
            def action():
                self._kill(self._get(identity), graceful=True)
        elif state in ('ForceRestart', 'GracefulRestart', 'PowerCycle'):
            def action():
                with self.lock:
                    s = self._get(identity)
                    self._kill(s)
                    self._start(s)
        else:
            raise error.NotSupportedError(f'Power state {state} is not supported')
        log('RESET', 'name=%s' % system['name'], state)
        if DELAY > 0:
            threading.Timer(DELAY, action).start()
        else:
            action()


def write_config(args):
    os.makedirs(args.state_dir, exist_ok=True)
    htpasswd = os.path.join(args.state_dir, 'htpasswd')
    # bcrypt cost 4: ~6 ms per request instead of ~0.3 s at the default cost
    hashed = bcrypt.hashpw(args.password.encode(), bcrypt.gensalt(rounds=4)).decode()
    with open(htpasswd, 'w') as f:
        f.write('%s:%s\n' % (args.user, hashed))
    system = {'uuid': args.uuid, 'name': args.name, 'power_state': 'Off', 'cmd': args.cmd,
              'nics': [{'mac': '52:54:00:77:00:11', 'ip': '10.77.1.11'}]}
    config = os.path.join(args.state_dir, 'emulator.conf')
    with open(config, 'w') as f:
        f.write('SUSHY_EMULATOR_LISTEN_IP = %r\n' % args.address)
        f.write('SUSHY_EMULATOR_LISTEN_PORT = %d\n' % args.port)
        f.write('SUSHY_EMULATOR_STATE_DIR = %r\n' % args.state_dir)
        f.write('SUSHY_EMULATOR_AUTH_FILE = %r\n' % htpasswd)
        f.write('SUSHY_EMULATOR_FAKE_SYSTEMS = [%r]\n' % system)
    return config


def main():
    p = argparse.ArgumentParser(description='Redfish BMC whose system power is a process')
    p.add_argument('--address', required=True)
    p.add_argument('--port', type=int, default=8000)
    p.add_argument('--user', default='admin')
    p.add_argument('--password', default='password')
    p.add_argument('--state-dir', required=True)
    p.add_argument('--cmd', default='exec sleep 1000')
    p.add_argument('--name', default='node1')
    p.add_argument('--uuid', default='11111111-2222-3333-4444-000000000001')
    p.add_argument('--ssl-certificate')
    p.add_argument('--ssl-key')
    args = p.parse_args()

    argv = ['sushy-emulator', '--fake', '--config', write_config(args)]
    if args.ssl_certificate:
        argv += ['--ssl-certificate', args.ssl_certificate, '--ssl-key', args.ssl_key]
    sys.argv = argv

    fakedriver.FakeDriver = ProcessDriver  # main.py looks it up at first use
    # sushy-emulator reaps every child in a SIGCHLD handler, racing with Popen.poll() (the
    # power state); let Popen reap its own children instead.
    emu.cleanup_zombies = lambda signum, frame: None

    def bye(signum, frame):
        for p in list(ProcessDriver.procs.values()):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        log('EXIT', signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    log('LISTEN', '%s:%d' % (args.address, args.port), 'tls=%s' % bool(args.ssl_certificate))
    return emu.main()


if __name__ == '__main__':
    sys.exit(main())
