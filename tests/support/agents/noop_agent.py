"""Test agent: changes nothing, says so."""

print("noop agent: nothing to do")
