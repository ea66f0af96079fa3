#!/bin/bash
# Second stage of the rehearsal VM. As PID 1 on the overlay of the guest's root (MODE pid1), it
# mounts what an init would and runs the agent; as a systemd unit (MODE systemd) it runs the agent.
# Arguments: SHARE_DIR MODULES_ROOT PYTHON PYTHONPATH MODE
# MODULES_ROOT and PYTHONPATH are empty on a pinned release's root (its own modules and packages).
set -u
share=$1 modules_root=$2 python=$3 pythonpath=$4 mode=${5:-pid1}
here=$(dirname "$0")
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root

if [ "$mode" = pid1 ]; then
  # The 9p lower layer shows the shared root's /proc and /sys: always mount the guest's over them.
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  [ -e /dev/null ] && [ -e /dev/vda -o ! -e /sys/block/vda ] || mount -t devtmpfs devtmpfs /dev
  mount -t tmpfs -o mode=0755 tmpfs /run
  mkdir -p /run/lock /run/lvm /dev/pts /dev/shm /dev/mqueue
  mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
  mount -t tmpfs tmpfs /dev/shm
  # /tmp stays the overlay's: a project checked out under the host's /tmp must stay visible.
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  hostname thinpool-rehearsal
  ip link set lo up 2>/dev/null
  # No udev in the guest: lvm and libdevmapper must create device nodes themselves.
  export DM_DISABLE_UDEV=1
fi
if [ -n "$modules_root" ]; then
  mkdir -p /lib/modules
  mount --bind "$modules_root/lib/modules" /lib/modules
fi
modprobe -a virtio_blk dm_mod dm_thin_pool loop virtio_rng 2>>"$share/boot.log"
# Bytecode is written (into the overlay, never the shared root): without it, every thinpool
# command in the guest compiled thinpool from source again, seconds under TCG.
unset PYTHONDONTWRITEBYTECODE
if [ -n "$pythonpath" ]; then export PYTHONPATH=$pythonpath; fi
exec "$python" "$here/agent.py" "$share" 2>>"$share/agent.log"
