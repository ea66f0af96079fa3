"""thinpool: LVM thin-pool storage for container hosts, planned exactly and applied safely."""

__version__ = "0.1.0"
