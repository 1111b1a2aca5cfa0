"""pytest plugin (entry point ``pytest11``): options, markers and fixtures for labs."""
