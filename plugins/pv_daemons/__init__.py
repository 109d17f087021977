"""pv_daemons: not implemented yet; see its issue. Registers no hooks."""
