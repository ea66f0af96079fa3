"""Use cases: what every front end (the CLI, boot, rehearse, the Ansible module) calls, with one Context."""
