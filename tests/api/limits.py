#!/usr/bin/env python3
"""Request-rate limits and failed-auth throttling (HAAS-API.md §3.2 layer 1, §3.1).

Run against an appliance configured with read 1/s burst 3, mutating 1/s burst 2, and 3 failed
authentications per source before throttling (see tests/api.rs)."""
import http.client
import re
import urllib.parse
import xmlrpc.client

from haas import URL, Client, check, fault, key, run


def retry_after(text):
    m = re.search(r"\(retryAfter=(\d+)s\)$", text)
    assert m, text
    return int(m.group(1))


@check
def reads_beyond_the_burst_get_710_with_a_retry_hint():
    c = Client("acme_read")
    for _ in range(3):
        c.getVmList()
    text = fault(710, c.getVmList)
    assert text.startswith("RateLimited: ") and retry_after(text) >= 1, text
    # The HTTP answer is 200 with a Retry-After header.
    body = xmlrpc.client.dumps((key("acme_read"), {}), "getVmList").encode()
    u = urllib.parse.urlparse(URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/RPC2", body=body, headers={"Content-Type": "text/xml"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and int(resp.getheader("Retry-After")) >= 1


@check
def mutations_have_their_own_bucket_per_customer():
    g = Client("globex_full")
    g.allocateVolume(sizeGB=30)
    g.allocateVolume(sizeGB=30)
    fault(710, g.allocateVolume, sizeGB=30)
    # Reads of the same customer are still allowed; the other customer is unaffected.
    assert g.getVolumeList()["totalCount"] == 2


@check
def repeated_bad_secrets_are_throttled_even_with_the_right_one_next():
    kid = key("acme_operate").split(":")[0]
    bad = Client(auth=kid + ":wrong")
    for _ in range(3):
        fault(100, bad.getVmList)
    text = fault(710, bad.getVmList)
    assert "failed authentications" in text, text
    # From this source the right secret waits too, until the bucket refills.
    fault(710, Client("acme_operate").getVmList)


if __name__ == "__main__":
    run()
