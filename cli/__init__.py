"""The `hivesync` command line: the service's entry points."""
