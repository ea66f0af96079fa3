"""The other programs thinpool runs (lsblk, wipefs, fuser, mkfs.xfs, systemctl, docker, apt, tar ...):
``argv`` builds their argument lists and ``output`` parses what they print. Pure, as ``core.lvm`` is for lvm."""
