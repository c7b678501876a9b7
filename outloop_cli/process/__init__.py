"""Child processes: spawning, supervision of whole trees, log sinks, and the one /proc reader."""
