"""pv_containers: not implemented yet; see its issue. Registers no hooks."""
