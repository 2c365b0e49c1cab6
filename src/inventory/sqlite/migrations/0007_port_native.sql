-- nhn inventory: a switch intent may be about a port's untagged (native) VLAN. With native = 1,
-- action 'add' makes `vlan` the trunk's native VLAN and 'remove' clears it; with 0, 'add' and
-- 'remove' are about a tagged VLAN as before, and 'access' makes the port an access port.
-- (switch_applied already has mode and native_vlan.)
ALTER TABLE switch_intents ADD COLUMN native INTEGER NOT NULL DEFAULT 0 CHECK (native IN (0, 1));
