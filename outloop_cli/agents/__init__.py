"""Agent backends: how to run each coding agent for one turn and read its report."""
