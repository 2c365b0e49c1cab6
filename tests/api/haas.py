"""Shared helpers for the API test scripts: a client per key (Python's stock xmlrpc.client),
fault assertions, polling of async requests, and a tiny runner that reports each check."""
import hashlib
import hmac
import os
import sys
import time
import traceback
import xmlrpc.client

URL = os.environ["NHN_URL"]
IMAGE = "img-centos54-64"


def key(name):
    return os.environ["NHN_KEY_" + name.upper()]


class Client:
    """`c.getVmInfo(vmId=...)` calls getVmInfo(auth, {"vmId": ...})."""

    def __init__(self, keyname=None, auth=None):
        self.auth = auth if auth is not None else key(keyname)
        self.proxy = xmlrpc.client.ServerProxy(URL)

    def __getattr__(self, method):
        def call(**args):
            return getattr(self.proxy, method)(self.auth, args)

        return call


class _SignedTransport(xmlrpc.client.Transport):
    """Signs calls the way nhn signs its dispatches (the facility stub checks every call)."""

    def send_content(self, connection, request_body):
        key = hashlib.sha256(os.environ["NHN_FACILITY_SECRET"].encode()).digest()
        stamp = str(int(time.time()))
        mac = hmac.new(key, stamp.encode() + b"\n" + request_body, hashlib.sha256).hexdigest()
        connection.putheader("X-Nhn-Signature", f"{stamp}:{mac}")
        super().send_content(connection, request_body)


def facility():
    """The facility stub's own XML-RPC interface (getStats, getArgs)."""
    return xmlrpc.client.ServerProxy(os.environ["NHN_FACILITY_URL"], transport=_SignedTransport())


def fault(code, fn, **args):
    """Calls fn(**args), which must fail with `code`; returns the faultString."""
    try:
        got = fn(**args)
    except xmlrpc.client.Fault as f:
        assert f.faultCode == code, f"expected fault {code}, got {f.faultCode}: {f.faultString}"
        return f.faultString
    raise AssertionError(f"expected fault {code}, the call returned {got!r}")


def wait_request(client, rid, timeout=30):
    """Polls getRequestIdInfo until the request is terminal; returns its RequestInfo."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.getRequestIdInfo(requestId=rid)["request"]
        if info["status"] in ("succeeded", "failed", "canceled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"request {rid} not terminal after {timeout}s: {info}")


def ready_vm(client, vm_type="V10"):
    """A stopped VM with a 30 GB DISK1 holding the CentOS image."""
    vm = client.allocateVm(vmType=vm_type)["vmId"]
    vol = client.allocateVolume(sizeGB=30)["volumeId"]
    client.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
    r = client.restoreImage(vmId=vm, imageId=IMAGE)
    assert wait_request(client, r["requestId"])["status"] == "succeeded"
    return vm


CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def run():
    only = sys.argv[1:]
    failed = 0
    chosen = [fn for fn in CHECKS if not only or fn.__name__ in only]
    assert chosen, f"no check named {only}"
    for fn in chosen:
        started = time.time()
        try:
            fn()
            print(f"ok    {fn.__name__} ({time.time() - started:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL  {fn.__name__}\n{traceback.format_exc()}", flush=True)
    print(f"{len(chosen) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
