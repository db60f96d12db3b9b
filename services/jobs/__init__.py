"""What every kind of job shares (preview builds, documentation passes): one lifecycle."""
