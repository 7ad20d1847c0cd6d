"""Stand-in for the V1 core runtime's IPC client package (TEST EQUIPMENT)."""
