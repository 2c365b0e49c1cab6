#!/usr/bin/env python3
"""Request lifecycle scenarios (HAAS-API.md §3.3) that need their own appliance settings:
lost callbacks and deadlines, the internal listener's credential and idempotency, a kill -9
in the middle of work, and fairness between customers. tests/api.rs runs each by name."""
import json
import os
import sys
import time
import xmlrpc.client

from haas import IMAGE, URL, Client, check, facility, fault, ready_vm, run, wait_request

acme = Client("acme_full")
globex = Client("globex_full")
INTERNAL = os.environ["NHN_INTERNAL_URL"]
SECRET = os.environ["NHN_FACILITY_SECRET"]
STATE = os.environ.get("NHN_SCENARIO_STATE", "")


@check
def the_internal_listener_takes_only_the_facility_credential():
    internal = xmlrpc.client.ServerProxy(INTERNAL)
    vm = ready_vm(acme)
    r = acme.powerOnVm(vmId=vm)
    fault(100, lambda: internal.reportRequestResult("wrong", r["requestId"], "failed", {}))
    fault(-32601, lambda: internal.getVmList(SECRET, {}))
    # The customer port does not serve the callback.
    fault(-32601, lambda: xmlrpc.client.ServerProxy(URL).reportRequestResult(SECRET, r["requestId"], "failed", {}))
    info = wait_request(acme, r["requestId"])
    assert info["status"] == "succeeded", info
    # Late or repeated callbacks change nothing.
    again = internal.reportRequestResult(SECRET, r["requestId"], "failed", {"errorMessage": "late"})
    assert again["applied"] is False, again
    assert wait_request(acme, r["requestId"])["status"] == "succeeded"
    # An unknown request id is refused.
    fault(400, lambda: internal.reportRequestResult(SECRET, "00000000-00000000-00000000-00000000-00000000", "succeeded", {}))
    fault(300, lambda: internal.reportRequestResult(SECRET, r["requestId"], "maybe", {}))


@check
def a_lost_callback_times_out_and_leaves_the_vm_in_error():
    vm = ready_vm(acme)
    r = acme.setIptables(vmId=vm, rules="# HANG-IN-FACILITY\n*filter\nCOMMIT\n")
    info = wait_request(acme, r["requestId"], timeout=20)
    assert info["status"] == "failed" and info["errorType"] == "Timeout", info
    assert "operator" in info["errorMessage"], info
    st = acme.getVmStatus(vmId=vm)
    assert st["state"] == "error" and st["power"] == "off", st
    assert acme.getVmInfo(vmId=vm)["vm"]["currentRequestId"] == ""


@check
def prepare_a_vm_while_the_facility_is_up():
    """Phase 1 of the facility-outage test: a ready VM, its id saved to STATE."""
    with open(STATE, "w") as f:
        json.dump({"vm": ready_vm(acme)}, f)


@check
def power_on_while_the_facility_is_down_stays_running():
    """Phase 2: the facility is down; the dispatch is retried, the request does not fail."""
    with open(STATE) as f:
        state = json.load(f)
    r = acme.powerOnVm(vmId=state["vm"])
    time.sleep(2.5)
    info = acme.getRequestIdInfo(requestId=r["requestId"])["request"]
    assert info["status"] == "running", info
    state["rid"] = r["requestId"]
    with open(STATE, "w") as f:
        json.dump(state, f)


@check
def the_power_on_completes_once_the_facility_is_back():
    """Phase 3: the facility is back on its address; the retried dispatch reaches it once."""
    with open(STATE) as f:
        state = json.load(f)
    info = wait_request(acme, state["rid"], timeout=30)
    assert info["status"] == "succeeded", info
    assert acme.getVmStatus(vmId=state["vm"])["state"] == "running"
    assert facility().getStats()[state["rid"]]["dispatches"] == 1


@check
def a_facility_that_refuses_the_signature_fails_the_request_at_once():
    """nhn is configured with another credential than the facility's: dispatches are refused
    (HTTP 401), not retried, and the request fails with BackendError."""
    vm = acme.allocateVm(vmType="V10")["vmId"]
    vol = acme.allocateVolume(sizeGB=30)["volumeId"]
    acme.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
    r = acme.restoreImage(vmId=vm, imageId=IMAGE)
    started = time.time()
    info = wait_request(acme, r["requestId"], timeout=20)
    assert info["status"] == "failed" and info["errorType"] == "BackendError", info
    assert "401" in info["errorMessage"], info
    assert time.time() - started < 5, "a refusal must not be retried"


@check
def power_on_refuses_when_no_hypervisor_has_room():
    """Three 12-vCPU hypervisors, four 8-vCPU VMs: the site has room for all four (allocateVm
    reserves site-wide), but only three can run at once, one per host."""
    vms = [ready_vm(acme, "V80") for _ in range(4)]
    for vm in vms[:3]:
        r = acme.powerOnVm(vmId=vm)
        assert wait_request(acme, r["requestId"])["status"] == "succeeded"
    text = fault(610, acme.powerOnVm, vmId=vms[3])
    assert "no hypervisor can start" in text and "Hypervisor-" not in text, text
    assert acme.getVmStatus(vmId=vms[3])["state"] == "stopped"
    off = acme.powerOffVm(vmId=vms[0])
    assert wait_request(acme, off["requestId"])["status"] == "succeeded"
    r = acme.powerOnVm(vmId=vms[3])
    assert wait_request(acme, r["requestId"])["status"] == "succeeded"


@check
def queue_power_ons_before_a_crash():
    """Phase 1 of the kill -9 test: six VMs, six power-ons in flight; ids saved to STATE."""
    vms = [ready_vm(acme) for _ in range(6)]
    ids = {vm: acme.powerOnVm(vmId=vm)["requestId"] for vm in vms}
    with open(STATE, "w") as f:
        json.dump(ids, f)


@check
def every_request_completes_once_after_the_restart():
    """Phase 2: after kill -9 and restart, each request succeeds, executed exactly once."""
    with open(STATE) as f:
        ids = json.load(f)
    for vm, rid in ids.items():
        info = wait_request(acme, rid, timeout=60)
        assert info["status"] == "succeeded", info
        assert acme.getVmStatus(vmId=vm)["state"] == "running"
    stats = facility().getStats()
    for rid in ids.values():
        assert stats[rid]["executions"] == 1, (rid, stats[rid])


@check
def one_customers_single_request_is_not_stuck_behind_anothers_200():
    n = 200
    a_vms = []
    for i in range(n):
        vm = acme.allocateVm(vmType="V10")["vmId"]
        vol = acme.allocateVolume(sizeGB=30)["volumeId"]
        acme.attachVolume(vmId=vm, volumeId=vol, device="DISK1")
        a_vms.append(vm)
    restores = [acme.restoreImage(vmId=vm, imageId=IMAGE)["requestId"] for vm in a_vms]
    for rid in restores:
        assert wait_request(acme, rid, timeout=120)["status"] == "succeeded"
    b_vm = ready_vm(globex)
    delay = float(os.environ["NHN_FACILITY_DELAY"])

    started = time.time()
    a_ids = [acme.powerOnVm(vmId=vm)["requestId"] for vm in a_vms]
    queued_a = time.time() - started
    b_sent = time.time()
    b_id = globex.powerOnVm(vmId=b_vm)["requestId"]
    info = wait_request(globex, b_id, timeout=60)
    b_latency = time.time() - b_sent
    a_done = acme.getVmList(state="running", limit=1)["totalCount"]
    assert info["status"] == "succeeded", info
    for rid in a_ids:
        assert wait_request(acme, rid, timeout=120)["status"] == "succeeded"
    a_total = time.time() - started
    print(f"A queued {n} power-ons in {queued_a:.2f}s and finished them in {a_total:.2f}s; "
          f"B's one finished {b_latency:.2f}s after submission, when A had {a_done}/{n} done "
          f"(facility takes {delay}s per request)", flush=True)
    assert a_done < n / 2, f"B waited for most of A's queue ({a_done}/{n} done)"
    assert b_latency < 4 * delay + 0.5, f"B took {b_latency:.2f}s"


@check
def a_revoked_key_is_refused():
    """Run after `nhn key revoke` of the acme_operate key (tests/api.rs)."""
    operate = Client("acme_operate")
    deadline = time.time() + 5
    while True:
        try:
            operate.getVmList()
        except xmlrpc.client.Fault as f:
            assert f.faultCode == 100, f
            break
        assert time.time() < deadline, "the revoked key still works after 5 s"
        time.sleep(0.1)
    assert acme.getVmList()["totalCount"] >= 0  # the customer's other keys still work


if __name__ == "__main__":
    run()
