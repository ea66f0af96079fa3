import gzip
import lzma
from pathlib import Path

import pytest

from thinpool.errors import MissingTool
from thinpool.rehearse import initramfs


def _launch(tmp_path: Path, **options: bool) -> initramfs.GuestLaunch:
    (tmp_path / "stage2.sh").write_text("#!/bin/bash\n")
    (tmp_path / "agent.py").write_text("print()\n")
    return initramfs.GuestLaunch(
        tmp_path / "stage2.sh", "share", "/mnt/share", ("/mnt/share", "a b"), agent=tmp_path / "agent.py", **options
    )


def _modules(tmp_path: Path) -> Path:
    tree = tmp_path / "lib/modules/6.1.0-test"
    for name in (
        "virtio",
        "virtio_ring",
        "virtio_pci",
        "9pnet",
        "9pnet_virtio",
        "9p",
        "netfs",
        "overlay",
        "virtio_blk",
    ):
        (tree / "kernel").mkdir(parents=True, exist_ok=True)
        (tree / "kernel" / f"{name}.ko").write_bytes(name.encode())
    (tree / "modules.dep").write_text(
        "kernel/virtio_pci.ko: kernel/virtio_ring.ko kernel/virtio.ko\n"
        "kernel/virtio_ring.ko:\nkernel/virtio.ko:\nkernel/virtio_blk.ko: kernel/virtio_ring.ko kernel/virtio.ko\n"
        "kernel/9pnet.ko:\nkernel/9pnet_virtio.ko: kernel/9pnet.ko kernel/virtio_ring.ko kernel/virtio.ko\n"
        "kernel/9p.ko: kernel/netfs.ko kernel/9pnet.ko\nkernel/netfs.ko:\n"
    )
    (tree / "modules.builtin").write_text("kernel/fs/overlayfs/overlay.ko\n")
    return tree


def test_modules_load_after_their_dependencies(tmp_path: Path) -> None:
    order = [Path(path).stem for path in initramfs.module_load_order(_modules(tmp_path), initramfs.BOOT_MODULES)]
    for module, needs in (("virtio_pci", "virtio"), ("9p", "netfs"), ("9p", "9pnet"), ("9pnet_virtio", "virtio_ring")):
        assert order.index(needs) < order.index(module)
    assert "overlay" not in order  # built in: nothing to load
    assert len(order) == len(set(order))


def test_a_module_neither_built_in_nor_present_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingTool, match="dm_thin_pool"):
        initramfs.module_load_order(_modules(tmp_path), ("dm_thin_pool",))


def _read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    entries: dict[str, tuple[int, bytes]] = {}
    offset = 0
    while True:
        header = data[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + name_size - 1].decode()
        data_start = name_start + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[data_start : data_start + size])
        offset = data_start + size + (-size % 4)


def _needs_busybox() -> None:
    try:
        initramfs.find_busybox()
    except MissingTool:
        pytest.skip("busybox is not installed")


def test_initramfs_is_a_valid_newc_archive(tmp_path: Path) -> None:
    _needs_busybox()
    target = initramfs.build(_modules(tmp_path), _launch(tmp_path), tmp_path / "initrd.gz")
    entries = _read_cpio(gzip.decompress(target.read_bytes()))
    assert entries["dev/console"][0] == 0o020600
    assert entries["bin/busybox"][0] == 0o100755
    assert entries["stage2.sh"][1] == b"#!/bin/bash\n" and entries["agent.py"][1] == b"print()\n"
    init_mode, init = entries["init"]
    assert init_mode == 0o100755
    script = init.decode()
    assert "mount -t 9p -o ro," in script and "mount -t tmpfs -o mode=0755 tmpfs /rw" in script
    assert "cp /stage2.sh /agent.py /newroot/.thinpool-vm/" in script
    assert "switch_root /newroot /bin/bash /.thinpool-vm/stage2.sh /mnt/share 'a b'" in script
    assert script.index("insmod /modules/virtio.ko") < script.index("insmod /modules/virtio_pci.ko")
    assert initramfs.AGENT_UNIT not in entries


def test_compressed_modules_are_stored_plain(tmp_path: Path) -> None:
    _needs_busybox()
    tree = _modules(tmp_path)
    plain = (tree / "kernel/9p.ko").read_bytes()
    (tree / "kernel/9p.ko.xz").write_bytes(lzma.compress(plain))
    (tree / "kernel/9p.ko").unlink()
    (tree / "modules.dep").write_text((tree / "modules.dep").read_text().replace("9p.ko:", "9p.ko.xz:"))
    entries = _read_cpio(gzip.decompress(initramfs.build(tree, _launch(tmp_path), tmp_path / "i.gz").read_bytes()))
    assert entries["modules/9p.ko"][1] == plain
    assert "insmod /modules/9p.ko\n" in entries["init"][1].decode()


def test_a_systemd_boot_keeps_root_changes_on_the_state_disk_and_runs_the_agent_as_a_unit(tmp_path: Path) -> None:
    _needs_busybox()
    tree = _modules(tmp_path)
    for name in ("virtio_scsi", "sd_mod", "ext4", "crc32c_generic"):
        (tree / "kernel" / f"{name}.ko").write_bytes(name.encode())
        with (tree / "modules.dep").open("a") as dep:
            dep.write(f"kernel/{name}.ko:\n")
    launch = _launch(tmp_path, systemd=True, state_disk=True)
    entries = _read_cpio(gzip.decompress(initramfs.build(tree, launch, tmp_path / "i.gz").read_bytes()))
    script = entries["init"][1].decode()
    assert "mount -t ext4 /dev/sda /rw" in script and "tmpfs /rw" not in script
    assert script.index("insmod /modules/crc32c_generic.ko") < script.index("mount -t ext4")
    assert script.rstrip().endswith("exec /bin/busybox switch_root /newroot /lib/systemd/systemd")
    unit = entries[initramfs.AGENT_UNIT][1].decode()
    assert "ExecStart=/bin/bash /.thinpool-vm/stage2.sh /mnt/share 'a b'" in unit
