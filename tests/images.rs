//! `nhn image` through the command line, on real archives: a small root filesystem (busybox,
//! an os-release, the Debian kernel that tests/fetch-kernel.sh fetches and the modules nhn's
//! initrd needs) packed as tar.zst, tar.gz and tar.xz. Import keeps the archive with its
//! SHA-256 and builds an initrd for the image's kernel; hostile and broken archives are
//! refused with their reason and leave nothing behind; `remove` is refused while a VM holds
//! the image. The catalogue is also what the API's getImageList shows.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::cli::{Nhn, examples};

/// The fetched kernel, or (locally) a skip; under CI a missing kernel fails.
fn kernel_or_skip(test: &str) -> Option<(PathBuf, String)> {
    // What the image's initrd packs (nhn initrd build's defaults).
    let tools = [
        "/bin/busybox",
        "/sbin/iscsistart",
        "/bin/tar",
        "/sbin/mke2fs",
        "/usr/bin/zstd",
        "/usr/bin/xz",
    ];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !Path::new(t).exists())
        .collect();
    let found = if missing.is_empty() {
        support::kernel::kernel()
    } else {
        Err(format!(
            "missing {missing:?} (busybox-static, open-iscsi, tar, e2fsprogs, zstd, xz-utils)"
        ))
    };
    match found {
        Ok(k) => Some(k),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            None
        }
    }
}

/// A root filesystem tree as (path in the archive, contents); directories implied.
fn rootfs(kroot: &Path, kver: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "etc/os-release".to_owned(),
            b"ID=debian\nVERSION_ID=\"12\"\n".to_vec(),
        ),
        (
            "bin/busybox".to_owned(),
            std::fs::read("/bin/busybox").expect("read busybox"),
        ),
        (
            format!("boot/vmlinuz-{kver}"),
            std::fs::read(kroot.join(format!("boot/vmlinuz-{kver}"))).expect("read the kernel"),
        ),
    ];
    let mods = kroot.join("lib/modules");
    let wanted: Vec<String> = nhn::initrd::DEFAULT_MODULES
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    let (closure, _) = nhn::initrd::module_closure(&mods, kver, &wanted).expect("closure");
    let base = mods.join(kver);
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .expect("list modules")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.extend(closure);
    for rel in names {
        let data = std::fs::read(base.join(&rel)).expect("read a module file");
        // A merged-/usr image keeps its modules under usr/lib.
        files.push((format!("usr/lib/modules/{kver}/{rel}"), data));
    }
    files
}

#[derive(Clone, Copy)]
enum Pack {
    Zstd,
    Gzip,
    Xz,
}

/// Writes `files` (plus any raw `extra` entries) as a compressed tar at `path`.
fn pack(path: &Path, how: Pack, files: &[(String, Vec<u8>)], extra: &[(&str, &str)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if h.set_path(name).is_err() {
            // A name tar::Builder refuses to write (`..`): straight into the header.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_cksum();
        tar.append(&h, data.as_slice()).expect("append");
    }
    // Symlinks as a real root has them (absolute targets), and raw names tar::Builder would
    // refuse to write (set directly into the header).
    for (name, target) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_link_name(target).expect("link name");
        h.set_cksum();
        tar.append(&h, std::io::empty()).expect("append a link");
    }
    let raw = tar.into_inner().expect("finish tar");
    let bytes = match how {
        Pack::Zstd => zstd::encode_all(raw.as_slice(), 3).expect("zstd"),
        Pack::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).expect("gzip");
            e.finish().expect("gzip")
        }
        Pack::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&raw).expect("xz");
            e.finish().expect("xz")
        }
    };
    std::fs::write(path, bytes).expect("write the archive");
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).expect("read"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn import_args<'a>(file: &'a str, name: &'a str) -> Vec<&'a str> {
    import_sized(file, name, "30")
}

fn import_sized<'a>(file: &'a str, name: &'a str, min_disk_gb: &'a str) -> Vec<&'a str> {
    vec![
        "image",
        "import",
        file,
        "--name",
        name,
        "--os",
        "Debian",
        "--os-version",
        "12",
        "--arch",
        "x86_64",
        "--min-disk-gb",
        min_disk_gb,
    ]
}

/// Nothing is left in the images directory but finished images.
fn leftovers(nhn: &Nhn) -> Vec<String> {
    std::fs::read_dir(nhn.dir().join("images"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_archive_becomes_an_image_with_its_own_kernel_and_initrd() {
    let Some((kroot, kver)) = kernel_or_skip("image import") else {
        return;
    };
    let nhn = Nhn::with_seed_site();
    let seed = examples().join("seed-site.toml");
    let files = rootfs(&kroot, &kver);
    let work = tempfile::tempdir().unwrap();
    for (how, name, ext) in [
        (Pack::Zstd, "deb-zst", "tar.zst"),
        (Pack::Gzip, "deb-gz", "tar.gz"),
        (Pack::Xz, "deb-xz", "tar.xz"),
    ] {
        let archive = work.path().join(format!("{name}.{ext}"));
        pack(&archive, how, &files, &[("lib", "/usr/lib")]);
        let out = nhn.ok(&import_args(archive.to_str().unwrap(), name));
        let digest = sha256(&archive);
        assert!(out.contains(&format!("imported img-{name}")), "{out}");
        assert!(out.contains(&format!("kernel {kver}")), "{out}");
        assert!(out.contains(&digest), "{out}");
        let dir = nhn.dir().join("images").join(format!("img-{name}"));
        assert_eq!(sha256(&dir.join(format!("rootfs.{ext}"))), digest);
        assert_eq!(
            std::fs::read(dir.join("vmlinuz")).unwrap(),
            files[2].1,
            "the image's own kernel"
        );
        // The initrd is a gzip'd newc archive holding the image's modules.
        let initrd = std::fs::read(dir.join("initrd.img")).unwrap();
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(initrd.as_slice()),
            &mut cpio,
        )
        .expect("gunzip the initrd");
        let listing = String::from_utf8_lossy(&cpio);
        assert!(
            listing.contains("virtio_blk.ko"),
            "no virtio_blk in the initrd"
        );
        assert!(
            listing.contains("iscsi_tcp.ko"),
            "no iscsi_tcp in the initrd"
        );
    }
    let list = nhn.ok(&["image", "list"]);
    for name in ["deb-zst", "deb-gz", "deb-xz"] {
        assert!(
            list.contains(&format!("img-{name}")) && list.contains(&kver),
            "{list}"
        );
    }
    // The site's declared image has no content yet; importing under its name gives it some,
    // and a second import of the same name is refused.
    assert!(
        list.contains("img-centos54-64") && list.contains("not imported"),
        "{list}"
    );
    let archive = work.path().join("centos54-64.tar.zst");
    pack(&archive, Pack::Zstd, &files, &[]);
    nhn.ok(&import_args(archive.to_str().unwrap(), "centos54-64"));
    let err = nhn.fails(&import_args(archive.to_str().unwrap(), "centos54-64"));
    assert!(err.contains("already"), "{err}");
    let show = nhn.ok(&["image", "show", "img-centos54-64"]);
    assert!(
        show.contains(&format!("sha256:  {}", sha256(&archive))),
        "{show}"
    );
    // Re-importing the site file (which names no archive) keeps the content.
    nhn.ok(&["inventory", "import", seed.to_str().unwrap()]);
    let show = nhn.ok(&["image", "show", "img-centos54-64"]);
    assert!(
        show.contains("archive: images/img-centos54-64/rootfs.tar.zst"),
        "{show}"
    );
    // A VM holding the image keeps it; once free, remove takes row and files.
    let db = nhn.db();
    db.execute(
        "INSERT INTO vms (public_id, name, vm_type, architecture, state, image_id, created_at, updated_at)
         VALUES ('vm-0000beef', 'vm-0000beef', 'V10', 'x86_64', 'stopped',
                 (SELECT id FROM images WHERE name = 'deb-zst'), 'now', 'now')",
        [],
    )
    .unwrap();
    let err = nhn.fails(&["image", "remove", "img-deb-zst"]);
    assert!(err.contains("vm-0000beef"), "{err}");
    db.execute("DELETE FROM vms WHERE public_id = 'vm-0000beef'", [])
        .unwrap();
    assert_eq!(
        nhn.ok(&["image", "remove", "deb-zst"]),
        "removed img-deb-zst\n"
    );
    assert!(!nhn.dir().join("images/img-deb-zst").exists());
    assert!(leftovers(&nhn).is_empty(), "{:?}", leftovers(&nhn));
}

#[test]
fn hostile_and_broken_archives_are_refused_and_leave_nothing() {
    let Some((kroot, kver)) = kernel_or_skip("image import refusals") else {
        return;
    };
    let nhn = Nhn::with_seed_site();
    let files = rootfs(&kroot, &kver);
    let work = tempfile::tempdir().unwrap();
    let before = nhn.events();
    let climbing = {
        let mut f = files.clone();
        f.push(("etc/../../escape".to_owned(), b"x".to_vec()));
        f
    };
    let no_kernel: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter(|(n, _)| !n.starts_with("boot/"))
        .cloned()
        .collect();
    let small = work.path().join("ok.tar.zst");
    pack(&small, Pack::Zstd, &files, &[]);
    let truncated = std::fs::read(&small).unwrap();
    type Make<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Make<'_>, &str, &str)> = vec![
        (
            "climb",
            Box::new(|p: &Path| pack(p, Pack::Gzip, &climbing, &[])),
            "30",
            "climbs out of the root",
        ),
        (
            "link-climb",
            Box::new(|p: &Path| {
                // A symlink is harmless (never made at import); a hard link out is not.
                let mut tar = tar::Builder::new(Vec::new());
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Link);
                h.set_path("etc/passwd").unwrap();
                h.as_gnu_mut().unwrap().linkname[..13].copy_from_slice(b"../etc/shadow");
                h.set_cksum();
                tar.append(&h, std::io::empty()).unwrap();
                let raw = tar.into_inner().unwrap();
                std::fs::write(p, zstd::encode_all(raw.as_slice(), 1).unwrap()).unwrap();
            }),
            "30",
            "climbs out of the root",
        ),
        (
            "nokernel",
            Box::new(|p: &Path| pack(p, Pack::Xz, &no_kernel, &[])),
            "30",
            "has no kernel with its modules",
        ),
        (
            "truncated",
            Box::new(|p: &Path| std::fs::write(p, &truncated[..truncated.len() / 2]).unwrap()),
            "30",
            "corrupt or truncated",
        ),
        (
            "notanarchive",
            Box::new(|p: &Path| std::fs::write(p, b"just text, not an archive\n").unwrap()),
            "30",
            "is not a tar.zst, tar.gz or tar.xz archive",
        ),
        (
            "toosmall",
            Box::new(|p: &Path| pack(p, Pack::Zstd, &files, &[])),
            "0",
            "is too small",
        ),
    ];
    for (name, make, min_disk_gb, says) in cases {
        let archive = work.path().join(format!("{name}.tar"));
        make(&archive);
        let err = nhn.fails(&import_sized(archive.to_str().unwrap(), name, min_disk_gb));
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            !nhn.dir().join(format!("images/img-{name}")).exists(),
            "{name}: files left"
        );
        assert!(leftovers(&nhn).is_empty(), "{name}: {:?}", leftovers(&nhn));
    }
    assert_eq!(
        nhn.events(),
        before,
        "a refused import wrote to the inventory"
    );
    assert!(!work.path().join("escape").exists());
}
