"""pv_config: not implemented yet; see its issue. Registers no hooks."""
