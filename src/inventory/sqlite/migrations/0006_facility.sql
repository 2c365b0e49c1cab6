-- nhn inventory, schema version 6: the facility layer.
-- An enrolled `nhn agent` per hypervisor: where it listens, the SHA-256 of its credential (the
-- credential itself is printed once by `nhn agent enroll` and never stored), and what its last
-- report said.
CREATE TABLE agents (
    machine_id        INTEGER PRIMARY KEY REFERENCES machines(id) ON DELETE CASCADE,
    url               TEXT NOT NULL,
    credential_sha256 TEXT NOT NULL UNIQUE,
    enrolled_at       TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'up', 'unreachable')),
    last_report_at    TEXT,
    report            TEXT NOT NULL DEFAULT '{}'      -- the last host report (JSON)
);

-- The typed facility command of an async request (JSON), resolved from the inventory when the
-- job engine claims it, and the machine it was handed to (only that machine's agent may report
-- on it).
ALTER TABLE requests ADD COLUMN command TEXT;
ALTER TABLE requests ADD COLUMN host_id INTEGER REFERENCES machines(id);

-- Why a VM is in its state, when that is not obvious (e.g. `error`: its QEMU exited).
ALTER TABLE vms ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';
