"""Installing on machines with no package index (offline GPU servers)."""
