"""Pure logic with no I/O: states, slot arithmetic, schedules and typed records."""
