"""Engine configuration formats, one parser each: daemon.json, containerd's config.toml, fstab.

Each ``parse`` returns a document or a :class:`~thinpool.config.document.ConfigError` naming what is
wrong (missing, unreadable, invalid, wrong shape); callers keep their own policy (refuse, report,
describe). Pure: the observation layer reads the files.
"""
