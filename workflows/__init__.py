"""Temporal workflows: deterministic orchestration only. They import no I/O code and call
activities by name; the data they exchange is defined in `workflows.contracts`."""
