"""The seed scenario's API side, from Python's stock xmlrpc.client (tests/facility.rs drives it
step by step, between which it looks at hypervisors and switches):

  prepare               acme: one L2EX network, two VMs (DISK1 30 GB, NET1 on it);
                        globex: one L2EX network, one VM. Prints the ids as JSON.
  power_on KEY VM...    powerOnVm each VM, poll getRequestIdInfo until succeeded, check
                        getVmStatus; prints {vm: requestId}.
  power_off KEY VM...   powerOffVm (force=False) the same way.
  status KEY VM         prints getVmStatus as JSON.
"""
import json
import sys

from haas import Client, wait_request


def prepare():
    out = {}
    for name in ("acme", "globex"):
        c = Client(name)
        net = c.allocateNetwork(networkType="L2EX")["networkId"]
        vms = []
        for _ in range(2 if name == "acme" else 1):
            vm = c.allocateVm(vmType="V10")["vmId"]
            vol = c.allocateVolume(sizeGB=30)["volumeId"]
            c.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
            mac = c.attachNetwork(vmId=vm, networkId=net, device="NET1")["macAddress"]
            vms.append({"vmId": vm, "volumeId": vol, "mac": mac})
        out[name] = {"networkId": net, "vms": vms}
    print(json.dumps(out))


def power(key, method, vms, expect):
    c = Client(key)
    started = {vm: getattr(c, method)(vmId=vm)["requestId"] for vm in vms}
    for vm, rid in started.items():
        info = wait_request(c, rid, timeout=120)
        assert info["status"] == "succeeded", info
        st = c.getVmStatus(vmId=vm)
        assert st["state"] == expect, st
    print(json.dumps(started))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prepare":
        prepare()
    elif cmd == "power_on":
        power(args[0], "powerOnVm", args[1:], "running")
    elif cmd == "power_off":
        power(args[0], "powerOffVm", args[1:], "stopped")
    elif cmd == "status":
        print(json.dumps(Client(args[0]).getVmStatus(vmId=args[1])))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
