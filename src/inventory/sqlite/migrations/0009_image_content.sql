-- What `nhn image import` learned about an image's archive: the kernel it boots with (its
-- initrd is built for it) and the sizes shown by `nhn image list`.
ALTER TABLE images ADD COLUMN kernel_version TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN archive_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN unpacked_bytes INTEGER NOT NULL DEFAULT 0;
