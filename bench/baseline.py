#!/usr/bin/env python3
"""The baseline for bench/api.sh: Python's SimpleXMLRPCServer (threaded, HTTP/1.1 keep-alive)
answering getVmInfo and getVmList from the same SQLite inventory with the same lookups as nhn
(key check by SHA-256, the VM row with its type and image, disks, NICs and addresses). It does
not record requests; nhn does (one insert per call)."""
import argparse
import hashlib
import hmac
import sqlite3
import threading
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    opts = ap.parse_args()
    local = threading.local()

    def db():
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(f"file:{opts.db}?mode=ro", uri=True, check_same_thread=False)
        return local.conn

    def customer(auth):
        kid, _, secret = auth.partition(":")
        row = db().execute(
            "SELECT k.customer_id, k.secret_hash FROM api_keys k JOIN customers c ON c.id = k.customer_id "
            "WHERE k.id = ? AND k.enabled AND c.enabled", (kid,)).fetchone()
        if not row or not hmac.compare_digest(row[1], hashlib.sha256(secret.encode()).digest()):
            raise Exception("AuthFailure")
        return row[0]

    def getVmInfo(auth, args):
        c = customer(auth)
        r = db().execute(
            "SELECT v.id, v.public_id, v.vm_type, t.vcpus, t.memory_mb, t.bandwidth_mbps, v.architecture, v.state, "
            "COALESCE(i.public_id, ''), v.comment, v.created_at, v.updated_at, COALESCE(v.current_request_id, '') "
            "FROM vms v JOIN vm_types t ON t.name = v.vm_type LEFT JOIN images i ON i.id = v.image_id "
            "WHERE v.public_id = ? AND v.customer_id = ?", (args["vmId"], c)).fetchone()
        if r is None:
            raise Exception("NotFound")
        disks = [{"device": d, "volumeId": v, "sizeGB": s} for d, v, s in db().execute(
            "SELECT device, public_id, size_gb FROM volumes WHERE vm_id = ? ORDER BY device", (r[0],))]
        nics = []
        for nid, dev, net, kind, mac in db().execute(
                "SELECT n.id, n.device, COALESCE(w.public_id, ''), COALESCE(w.kind, ''), n.mac FROM nics n "
                "LEFT JOIN networks w ON w.id = n.network_id WHERE n.vm_id = ? ORDER BY n.device", (r[0],)):
            ips = [a for (a,) in db().execute("SELECT address FROM ip_addresses WHERE nic_id = ?", (nid,))]
            nics.append({"device": dev, "networkId": net, "networkType": kind, "macAddress": mac, "ipAddresses": ips})
        power = "on" if r[7] in ("starting", "running", "stopping", "resetting") else "off"
        vm = {"vmId": r[1], "vmType": r[2], "cpu": r[3], "memoryMB": r[4], "bandwidthMbps": r[5],
              "architecture": r[6], "power": power, "state": r[7], "imageId": r[8], "comment": r[9],
              "createdAt": r[10], "updatedAt": r[11], "currentRequestId": r[12], "disks": disks, "nics": nics}
        return {"requestId": "baseline", "vm": vm}

    def getVmList(auth, args):
        c = customer(auth)
        total = db().execute("SELECT COUNT(*) FROM vms WHERE customer_id = ?", (c,)).fetchone()[0]
        rows = db().execute(
            "SELECT public_id, vm_type, architecture, state, comment FROM vms WHERE customer_id = ? "
            "ORDER BY id LIMIT ? OFFSET ?", (c, args.get("limit", 100), args.get("offset", 0)))
        lst = [{"vmId": a, "vmType": b, "architecture": d, "state": e, "comment": f,
                "power": "on" if e in ("starting", "running", "stopping", "resetting") else "off"}
               for a, b, d, e, f in rows]
        return {"requestId": "baseline", "totalCount": total, "vmList": lst}

    server = Server(("127.0.0.1", opts.port), requestHandler=Handler, logRequests=False)
    server.register_function(getVmInfo)
    server.register_function(getVmList)
    server.serve_forever()


if __name__ == "__main__":
    main()
