"""pv_commands: not implemented yet; see its issue. Registers no hooks."""
