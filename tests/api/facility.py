#!/usr/bin/env python3
"""A stand-in for the facility layer (the future `nhn agent`), for the API tests.

nhn's job engine POSTs XML-RPC `dispatchRequest({requestId, method, resourceId, command})` here
(`command`: the typed facility command as JSON; Init* settings are its `settings`);
after --delay seconds this stub "executes" the request once and reports the result to nhn's
internal listener with `reportRequestResult(credential, requestId, status, result)`, retrying
while nhn is down (as a real facility must). `getRequestStatus(requestId)` answers the
reconciler. A request whose arguments contain the string FAIL-IN-FACILITY fails; one with
HANG-IN-FACILITY is accepted and never reported (a lost callback). `getStats()` returns how
often each request was dispatched and executed, so tests can check "exactly once";
`getArgs(requestId)` the arguments the facility received.

Every call must carry nhn's `X-Nhn-Signature: <unix>:<hex HMAC-SHA256(sha256(secret),
"<unix>\n" + body)>` no older than 5 minutes; anything else gets HTTP 401 (so a test run proves
that nhn signs its dispatches). Prints "PORT <n>" on stdout once listening (--port picks it, for
a facility that comes back on the same address). Only the standard library is used.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import xmlrpc.client
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True


KEY = hashlib.sha256(os.environ["NHN_FACILITY_SECRET"].encode()).digest()


class Quiet(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, *args):
        pass

    def decode_request_content(self, data):
        stamp, _, mac = self.headers.get("X-Nhn-Signature", "").partition(":")
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        want = hmac.new(KEY, stamp.encode() + b"\n" + data, hashlib.sha256).hexdigest()
        if not (fresh and hmac.compare_digest(mac, want)):
            print("refused an unsigned or badly signed call", file=sys.stderr, flush=True)
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().decode_request_content(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--internal", required=True)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--port", type=int, default=0)
    opts = ap.parse_args()
    secret = os.environ["NHN_FACILITY_SECRET"]
    lock = threading.Lock()
    requests = {}  # id -> {"status", "result", "dispatches", "executions", "args"}

    def args_text(args):
        return repr(args)

    def execute(rid, method, resource, args):
        time.sleep(opts.delay)
        text = args_text(args)
        if "HANG-IN-FACILITY" in text:
            return
        if "FAIL-IN-FACILITY" in text:
            status, result = "failed", {"errorType": "GuestError", "errorMessage": "injected failure"}
        else:
            status, result = "succeeded", {"vmId": resource}
        with lock:
            requests[rid].update(status=status, result=result)
            requests[rid]["executions"] += 1
        proxy = xmlrpc.client.ServerProxy(opts.internal)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                proxy.reportRequestResult(secret, rid, status, result)
                return
            except OSError:
                time.sleep(0.2)  # nhn is down or restarting: retry
            except xmlrpc.client.ProtocolError:
                time.sleep(0.2)
        print(f"gave up reporting {rid}", file=sys.stderr)

    def dispatchRequest(job):
        rid = job["requestId"]
        command = json.loads(job["command"])
        args = command.get("settings", command)
        with lock:
            known = rid in requests
            if not known:
                requests[rid] = {"status": "running", "result": {}, "dispatches": 0, "executions": 0,
                                 "args": args, "hypervisor": job.get("hypervisor", "")}
            requests[rid]["dispatches"] += 1
        if not known:
            threading.Thread(
                target=execute,
                args=(rid, job["method"], job["resourceId"], args),
                daemon=True,
            ).start()
        print(f"dispatch {rid} {job['method']} {job['resourceId']}", file=sys.stderr, flush=True)
        return {"accepted": True}

    def getRequestStatus(rid):
        with lock:
            r = requests.get(rid)
            if r is None:
                return {"status": "unknown"}
            out = {"status": r["status"], "result": r["result"]}
            if r["status"] == "failed":
                out.update(errorType=r["result"]["errorType"], errorMessage=r["result"]["errorMessage"])
            return out

    def getStats():
        with lock:
            return {rid: {"dispatches": r["dispatches"], "executions": r["executions"],
                          "hypervisor": r["hypervisor"]} for rid, r in requests.items()}

    def getArgs(rid):
        with lock:
            return requests[rid]["args"]

    server = Server(("127.0.0.1", opts.port), requestHandler=Quiet, logRequests=False)
    server.register_function(dispatchRequest)
    server.register_function(getRequestStatus)
    server.register_function(getStats)
    server.register_function(getArgs)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
