-- The SHA-256 of an imported image's kernel and initrd: a VM with the image on DISK1 boots
-- them, and its hypervisor keeps a copy verified by them. A running request's progress
-- (restoreImage: archive bytes read by the install boot), as its agent last reported it.
ALTER TABLE images ADD COLUMN kernel_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN initrd_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN progress_done INTEGER;
ALTER TABLE requests ADD COLUMN progress_total INTEGER;
