import gzip
from pathlib import Path

import pytest

from thinpool.errors import MissingTool
from thinpool.rehearse import initramfs

LAUNCH = initramfs.GuestLaunch(Path("/opt/stage2.sh"), "share", "/mnt/share", ("/mnt/share", "a b"))


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


def test_initramfs_is_a_valid_newc_archive(tmp_path: Path) -> None:
    try:
        initramfs.find_busybox()
    except MissingTool:
        pytest.skip("busybox is not installed")
    target = initramfs.build(_modules(tmp_path), LAUNCH, tmp_path / "initrd.gz")
    entries = _read_cpio(gzip.decompress(target.read_bytes()))
    assert entries["dev/console"][0] == 0o020600
    assert entries["bin/busybox"][0] == 0o100755
    init_mode, init = entries["init"]
    assert init_mode == 0o100755
    script = init.decode()
    assert "mount -t 9p -o ro," in script and "switch_root /newroot /bin/bash /opt/stage2.sh /mnt/share 'a b'" in script
    assert script.index("insmod /modules/virtio.ko") < script.index("insmod /modules/virtio_pci.ko")
