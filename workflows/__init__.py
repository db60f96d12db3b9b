"""Temporal workflows: deterministic orchestration only. They import no I/O code, only the
`contracts` (passed through the sandbox), and call activities by the names defined there."""
