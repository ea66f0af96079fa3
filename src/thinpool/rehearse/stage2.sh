#!/bin/bash
# Second stage of the rehearsal VM, run as PID 1 on the overlay of the host's root.
# Arguments: SHARE_DIR MODULES_ROOT PYTHON PYTHONPATH
set -u
share=$1 modules_root=$2 python=$3 pythonpath=$4

# The 9p lower layer shows the host's own /proc and /sys: always mount the guest's over them.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
[ -e /dev/null ] && [ -e /dev/vda -o ! -e /sys/block/vda ] || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /run/lvm /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# /tmp stays the overlay's: a project checked out under the host's /tmp must stay visible.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /lib/modules
mount --bind "$modules_root/lib/modules" /lib/modules
modprobe -a virtio_blk dm_mod dm_thin_pool loop virtio_rng 2>>"$share/boot.log"
hostname thinpool-rehearsal
ip link set lo up 2>/dev/null
# No udev in the guest: lvm and libdevmapper must create device nodes themselves.
export DM_DISABLE_UDEV=1 LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Bytecode is written (into the overlay's tmpfs, never the host): without it, every thinpool
# command in the guest compiled thinpool from source again, seconds under TCG.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=$pythonpath HOME=/root
exec "$python" -m thinpool.rehearse.agent "$share" 2>>"$share/agent.log"
