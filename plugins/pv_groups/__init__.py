"""pv_groups: not implemented yet; see its issue. Registers no hooks."""
