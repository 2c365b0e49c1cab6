-- nhn inventory, schema version 2: the switch plane.
-- A VM being moved (live migration, evacuation) holds a slot on its destination as well as on
-- its source until the move finishes, and the planner keeps its VLANs on both hosts' ports:
-- the destination's are added before the VM moves, the source's removed after (make before
-- break). NULL when the VM is not moving.
ALTER TABLE vms ADD COLUMN migrating_to INTEGER REFERENCES machines(id);
