-- nhn inventory, schema version 1. See ARCHITECTURE.md and DESIGN.md §3.
-- Conventions: integer surrogate keys; public ids (vm-…, net-…, vol-…, img-…) for what customers
-- see; timestamps are RFC 3339 UTC text; MAC addresses are lower-case aa:bb:cc:dd:ee:ff.

-- Every committed change appends here in the same transaction; `nhn serve` follows this table
-- (in-process and from other processes such as the CLI) to keep its in-memory indexes current.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,          -- e.g. switch, machine, nic, vm, network, lease, key
    object  TEXT NOT NULL           -- the object's name or public id
);

CREATE TABLE sites (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE quotas (
    customer_id      INTEGER PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    vms              INTEGER NOT NULL,
    vcpu             INTEGER NOT NULL,
    memory_mb        INTEGER NOT NULL,
    volumes          INTEGER NOT NULL,
    volume_gb        INTEGER NOT NULL,
    networks_l2ex    INTEGER NOT NULL,
    networks_l3ex    INTEGER NOT NULL,
    networks_l3sh    INTEGER NOT NULL,
    l3sh_addresses   INTEGER NOT NULL,
    pending_requests INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,                 -- accessKeyId (public)
    customer_id  INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    secret_hash  BLOB NOT NULL,                    -- SHA-256 of the secret; the secret is never stored
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'full')),
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_customer ON api_keys(customer_id);

CREATE TABLE switches (
    id          INTEGER PRIMARY KEY,
    site_id     INTEGER NOT NULL REFERENCES sites(id),
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('core', 'edge')),
    driver      TEXT NOT NULL CHECK (driver IN ('ssh', 'snmp')),
    os          TEXT NOT NULL,                     -- template set under switch-templates/
    address     TEXT NOT NULL,
    credentials TEXT NOT NULL,                     -- name of a credential in the config, never the secret
    host_key    TEXT,                              -- pinned SSH host key fingerprint (SHA256:…)
    max_macs    INTEGER                            -- MAC table budget (edges)
);

CREATE TABLE switch_ports (
    id          INTEGER PRIMARY KEY,
    switch_id   INTEGER NOT NULL REFERENCES switches(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,                  -- order in the site file (1-based)
    UNIQUE (switch_id, name)
);

-- Cabling between two switch ports (edge uplink <-> core, core <-> core).
CREATE TABLE links (
    id         INTEGER PRIMARY KEY,
    a_port_id  INTEGER NOT NULL UNIQUE REFERENCES switch_ports(id) ON DELETE CASCADE,
    b_port_id  INTEGER NOT NULL UNIQUE REFERENCES switch_ports(id) ON DELETE CASCADE
);

CREATE TABLE machines (
    id              INTEGER PRIMARY KEY,
    site_id         INTEGER REFERENCES sites(id),  -- NULL for discovered machines
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('hypervisor', 'bare-metal', 'appliance', 'discovered')),
    vcpus           INTEGER NOT NULL DEFAULT 0,    -- slot capacity (hypervisors)
    memory_mb       INTEGER NOT NULL DEFAULT 0,
    power_driver    TEXT NOT NULL DEFAULT 'none' CHECK (power_driver IN ('none', 'agent', 'ipmi', 'redfish')),
    bmc_address     TEXT,
    bmc_credentials TEXT,                          -- credential name in the config
    initiator_iqn   TEXT,                          -- iSCSI initiator name for its boot volume
    state           TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'maintenance', 'failed', 'discovered')),
    created_at      TEXT NOT NULL
);

CREATE TABLE vm_types (
    name           TEXT PRIMARY KEY,               -- V10 … V160
    vcpus          INTEGER NOT NULL,
    memory_mb      INTEGER NOT NULL,
    bandwidth_mbps INTEGER NOT NULL
);
INSERT INTO vm_types (name, vcpus, memory_mb, bandwidth_mbps) VALUES
    ('V10', 1, 1024, 100), ('V20', 2, 2048, 100), ('V40', 4, 4096, 200),
    ('V80', 8, 8192, 500), ('V160', 16, 16384, 1000);

CREATE TABLE images (
    id             INTEGER PRIMARY KEY,
    public_id      TEXT NOT NULL UNIQUE,           -- img-…
    name           TEXT NOT NULL UNIQUE,
    os             TEXT NOT NULL,
    os_version     TEXT NOT NULL,
    architecture   TEXT NOT NULL CHECK (architecture IN ('x86_64', 'i386')),
    min_disk_gb    INTEGER NOT NULL,
    init_supported INTEGER NOT NULL DEFAULT 1,
    description    TEXT NOT NULL DEFAULT '',
    archive        TEXT NOT NULL DEFAULT '',       -- root filesystem archive (path under the data dir)
    sha256         TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL
);

-- Customer-visible cartridges (and operator VMs placed from the CLI, customer_id NULL).
CREATE TABLE vms (
    id                 INTEGER PRIMARY KEY,
    public_id          TEXT NOT NULL UNIQUE,       -- vm-…
    name               TEXT NOT NULL UNIQUE,
    customer_id        INTEGER REFERENCES customers(id),
    vm_type            TEXT NOT NULL REFERENCES vm_types(name),
    architecture       TEXT NOT NULL DEFAULT 'x86_64' CHECK (architecture IN ('x86_64', 'i386')),
    state              TEXT NOT NULL DEFAULT 'stopped' CHECK (state IN
                         ('stopped', 'starting', 'running', 'stopping', 'resetting', 'installing', 'configuring', 'error')),
    hypervisor_id      INTEGER REFERENCES machines(id),  -- current slot; NULL when not placed
    image_id           INTEGER REFERENCES images(id),
    current_request_id TEXT,
    comment            TEXT NOT NULL DEFAULT '',
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX vms_customer ON vms(customer_id);
CREATE INDEX vms_hypervisor ON vms(hypervisor_id);

CREATE TABLE vlan_pools (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    first_vlan INTEGER NOT NULL CHECK (first_vlan BETWEEN 1 AND 4094),
    last_vlan  INTEGER NOT NULL CHECK (last_vlan BETWEEN 1 AND 4094),
    CHECK (first_vlan <= last_vlan)
);

-- Operator address space: L3SH (one shared segment, addresses handed out one by one) and
-- L3EX (a supernet carved into customer prefixes).
CREATE TABLE ip_pools (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    kind                  TEXT NOT NULL CHECK (kind IN ('L3SH', 'L3EX')),
    prefix                TEXT NOT NULL,           -- CIDR
    gateway               TEXT,
    vlan                  INTEGER,                 -- L3SH: the shared segment's VLAN
    range_first           TEXT,                    -- L3SH: first assignable address
    range_last            TEXT,
    default_prefix_length INTEGER                  -- L3EX: size of a customer prefix
);

-- Infrastructure networks (kind 'infra': storage, management, provisioning, service) come from
-- the site file; customer networks (L2EX/L3EX/L3SH) from the API.
CREATE TABLE networks (
    id            INTEGER PRIMARY KEY,
    public_id     TEXT NOT NULL UNIQUE,            -- net-… (infra networks: their name)
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('infra', 'L2EX', 'L3EX', 'L3SH')),
    role          TEXT CHECK (role IN ('storage', 'management', 'provisioning', 'service')),
    customer_id   INTEGER REFERENCES customers(id),
    vlan          INTEGER CHECK (vlan BETWEEN 1 AND 4094),
    vlan_pool_id  INTEGER REFERENCES vlan_pools(id),
    ip_pool_id    INTEGER REFERENCES ip_pools(id),
    subnet        TEXT,                            -- CIDR; NULL for L2EX
    gateway       TEXT,
    dns           TEXT NOT NULL DEFAULT '',        -- comma-separated resolver addresses
    comment       TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL
);
CREATE INDEX networks_customer ON networks(customer_id);
CREATE UNIQUE INDEX networks_vlan_private ON networks(vlan) WHERE kind IN ('infra', 'L2EX', 'L3EX');

-- A NIC belongs to a machine (with its edge port) or to a VM (device NET1/NET2).
CREATE TABLE nics (
    id             INTEGER PRIMARY KEY,
    mac            TEXT NOT NULL UNIQUE,
    machine_id     INTEGER REFERENCES machines(id) ON DELETE CASCADE,
    vm_id          INTEGER REFERENCES vms(id) ON DELETE CASCADE,
    device         TEXT NOT NULL,
    switch_port_id INTEGER REFERENCES switch_ports(id),
    network_id     INTEGER REFERENCES networks(id),
    boot           INTEGER NOT NULL DEFAULT 0,     -- PXE boots through this NIC
    CHECK ((machine_id IS NULL) <> (vm_id IS NULL)),
    UNIQUE (machine_id, device),
    UNIQUE (vm_id, device)
);
CREATE UNIQUE INDEX nics_port ON nics(switch_port_id) WHERE switch_port_id IS NOT NULL;

CREATE TABLE ip_addresses (
    id          INTEGER PRIMARY KEY,
    address     TEXT NOT NULL UNIQUE,
    network_id  INTEGER REFERENCES networks(id) ON DELETE CASCADE,
    ip_pool_id  INTEGER REFERENCES ip_pools(id),
    customer_id INTEGER REFERENCES customers(id),
    nic_id      INTEGER REFERENCES nics(id) ON DELETE SET NULL
);
CREATE INDEX ip_addresses_nic ON ip_addresses(nic_id);

CREATE TABLE iscsi_portals (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    address    TEXT NOT NULL,
    port       INTEGER NOT NULL DEFAULT 3260,
    iqn_prefix TEXT NOT NULL                       -- targets are named <iqn_prefix>:<volume>
);

CREATE TABLE volumes (
    id          INTEGER PRIMARY KEY,
    public_id   TEXT NOT NULL UNIQUE,              -- vol-…
    customer_id INTEGER REFERENCES customers(id),
    size_gb     INTEGER NOT NULL CHECK (size_gb > 0),
    backing     TEXT NOT NULL,                     -- sparse file under the data dir
    portal_id   INTEGER REFERENCES iscsi_portals(id),
    target_iqn  TEXT NOT NULL UNIQUE,
    lun         INTEGER NOT NULL DEFAULT 1,
    vm_id       INTEGER REFERENCES vms(id) ON DELETE SET NULL,
    device      TEXT CHECK (device IN ('DISK1', 'DISK2')),
    machine_id  INTEGER REFERENCES machines(id) ON DELETE SET NULL,  -- boot volume of a diskless server
    image_id    INTEGER REFERENCES images(id),
    comment     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    UNIQUE (vm_id, device)
);

-- Durable requests (HAAS-API.md §3.3): every API call gets one; async ones move through states.
CREATE TABLE requests (
    id             TEXT PRIMARY KEY,               -- xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx
    customer_id    INTEGER REFERENCES customers(id),
    key_id         TEXT,
    method         TEXT NOT NULL,
    resource_type  TEXT NOT NULL DEFAULT 'none',
    resource_id    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    args           TEXT NOT NULL DEFAULT '',
    client_token   TEXT,
    args_digest    TEXT,
    response       TEXT,
    previous_state TEXT,
    result         TEXT NOT NULL DEFAULT '',
    error_type     TEXT NOT NULL DEFAULT '',
    error_message  TEXT NOT NULL DEFAULT '',
    accepted_at    TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    deadline_at    TEXT
);
CREATE INDEX requests_status ON requests(status) WHERE status IN ('queued', 'running');
CREATE INDEX requests_customer ON requests(customer_id, accepted_at);
CREATE UNIQUE INDEX requests_client_token ON requests(customer_id, method, client_token)
    WHERE client_token IS NOT NULL;

-- Dynamic DHCP leases (static answers come from nics + ip_addresses). One row per address; a
-- declined address keeps the declining client's MAC until it expires.
CREATE TABLE leases (
    address         TEXT PRIMARY KEY,
    mac             TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
    hostname        TEXT NOT NULL DEFAULT '',
    client_id       BLOB,
    giaddr          TEXT,
    circuit_id      BLOB,
    remote_id       BLOB,
    expires_at      INTEGER NOT NULL,              -- unix seconds
    updated_at      INTEGER NOT NULL
);
CREATE INDEX leases_mac ON leases(mac);

-- Switch plane: what the reconciler must do (persisted before anything is sent) and what it
-- last read back from each port.
CREATE TABLE switch_intents (
    id          INTEGER PRIMARY KEY,
    switch_id   INTEGER NOT NULL REFERENCES switches(id) ON DELETE CASCADE,
    port        TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('add', 'remove', 'access')),
    vlan        INTEGER NOT NULL CHECK (vlan BETWEEN 1 AND 4094),
    reason      TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'canceled')),
    created_at  TEXT NOT NULL,
    applied_at  TEXT
);
CREATE INDEX switch_intents_pending ON switch_intents(switch_id) WHERE state = 'pending';

CREATE TABLE switch_applied (
    switch_id    INTEGER NOT NULL REFERENCES switches(id) ON DELETE CASCADE,
    port         TEXT NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('trunk', 'access')),
    vlans        TEXT NOT NULL,                    -- canonical list, e.g. "100,200"
    native_vlan  INTEGER,
    read_at      TEXT NOT NULL,
    PRIMARY KEY (switch_id, port)
);

CREATE TABLE switch_status (
    switch_id       INTEGER PRIMARY KEY REFERENCES switches(id) ON DELETE CASCADE,
    last_success_at TEXT,
    last_readback_at TEXT,
    last_error      TEXT,
    last_error_at   TEXT
);

-- Operator notes on any object (customer-visible comments live on vms/networks/volumes).
CREATE TABLE comments (
    id          INTEGER PRIMARY KEY,
    object_kind TEXT NOT NULL,
    object      TEXT NOT NULL,
    author      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX comments_object ON comments(object_kind, object);

-- Who changed what, with what result. Never holds secrets.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,                         -- key id, or cli:<user>
    action  TEXT NOT NULL,
    object  TEXT NOT NULL DEFAULT '',
    result  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit(at);
