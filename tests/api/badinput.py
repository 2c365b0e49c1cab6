#!/usr/bin/env python3
"""Hostile and broken requests (HAAS-API.md §2.7): each gets a proper fault (or HTTP 413/400),
the appliance keeps answering, and its memory stays bounded."""
import http.client
import os
import re
import socket
import urllib.parse
import xmlrpc.client

from haas import URL, Client, check, key, run

U = urllib.parse.urlparse(URL)
PID = int(os.environ["NHN_PID"])


def post(body, method="POST"):
    conn = http.client.HTTPConnection(U.hostname, U.port, timeout=30)
    conn.request(method, "/RPC2", body=body, headers={"Content-Type": "text/xml"})
    resp = conn.getresponse()
    return resp.status, resp.read().decode("utf-8", "replace")


def fault_of(body):
    status, text = post(body)
    assert status == 200, (status, text[:300])
    try:
        xmlrpc.client.loads(text)
    except xmlrpc.client.Fault as f:
        return f.faultCode, f.faultString
    raise AssertionError(f"no fault: {text[:300]}")


def rss_kb():
    with open(f"/proc/{PID}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def call(params):
    return xmlrpc.client.dumps(params, "getVmList").encode()


@check
def malformed_xml_is_parse_error():
    code, text = fault_of(b"<methodCall><methodName>getVmList</methodName><params>")
    assert code == -32700, text
    assert fault_of(b"\xff\xfe not utf-8")[0] == -32700
    assert fault_of(b"<a></b>")[0] == -32700


@check
def well_formed_but_not_xml_rpc_is_invalid_request():
    code, text = fault_of(b"<?xml version='1.0'?><hello>world</hello>")
    assert code == -32600, text
    code, text = fault_of(b"<methodCall><methodName>getVmList</methodName><params><param><value><int>x</int></value></param></params></methodCall>")
    assert code == -32600 and "<int>" not in text, text


@check
def wrong_types_are_invalid_params():
    assert fault_of(call((42, {})))[0] == -32602
    assert fault_of(call((key("acme_full"), {"limit": "ten"})))[0] == -32602
    assert fault_of(call((key("acme_full"), {"limit": 1.5})))[0] == -32602


@check
def deep_nesting_is_refused_before_parsing():
    deep = "<value><array><data>" * 5000 + "</data></array></value>" * 5000
    body = f"<methodCall><methodName>getVmList</methodName><params><param>{deep}</param></params></methodCall>"
    code, text = fault_of(body.encode())
    assert code == -32700 and "deeper" in text, text


@check
def entity_expansion_bombs_are_refused():
    lol = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">' for i in range(10))
           + ']><methodCall><methodName>&lol9;</methodName></methodCall>')
    code, text = fault_of(lol.encode())
    assert code == -32700 and "DTD" in text, text
    code, text = fault_of(b"<methodCall><methodName>&xxe;</methodName></methodCall>")
    assert code == -32700 and "entity" in text, text


def announce_big_body(length, send):
    """Announces `length` bytes, sends `send` of them, returns the HTTP status line."""
    s = socket.create_connection((U.hostname, U.port), timeout=10)
    s.sendall(f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
              f"Content-Length: {length}\r\n\r\n".encode() + b" " * send)
    line = s.makefile("rb").readline().decode()
    s.close()
    return line


def chunked_big_body(total):
    """Sends `total` bytes chunked (no length announced) unless the server answers first."""
    s = socket.create_connection((U.hostname, U.port), timeout=10)
    s.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
    try:
        for _ in range(total // 65536):
            s.sendall(chunk)
    except OSError:
        pass  # the server answered and closed: what we want
    line = s.makefile("rb").readline().decode()
    s.close()
    return line


@check
def huge_bodies_get_413_and_memory_stays_bounded():
    before = rss_kb()
    for _ in range(10):
        line = announce_big_body(8 << 20, 65536)
        assert " 413 " in line, line
        line = chunked_big_body(4 << 20)
        assert " 413 " in line, line
    # Many largest-allowed bodies (just under the limit) in a row.
    payload = "x" * (900 * 1024)
    for _ in range(20):
        code, _ = fault_of(call((key("acme_full"), {"comment": payload})))
        assert code == -32602
    grown = rss_kb() - before
    assert grown < 150 * 1024, f"RSS grew by {grown} KiB"


@check
def get_is_not_an_xml_rpc_call():
    status, _ = post(None, method="GET")
    assert status == 400, status


@check
def the_appliance_still_answers_afterwards():
    assert Client("acme_full").getVmList()["totalCount"] >= 0


if __name__ == "__main__":
    run()
