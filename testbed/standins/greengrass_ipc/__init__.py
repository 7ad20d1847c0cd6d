"""Test equipment: a stand-in for the Greengrass V2 nucleus's IPC server (``server.py``); see its docstring."""
