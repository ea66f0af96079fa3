"""The pure rules: observed state + desired spec -> Plan. Standard library only, no I/O."""
