"""The host's other programs (block-device probes, mkfs, mount, systemd, apt): argv builders and parsers, pure."""
