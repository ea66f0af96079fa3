"""Everything that touches the machine: the runner (the one door to subprocesses), observation, file writes."""
