"""Training jobs: the shared loop (mesh, checkpoints, logging) and the per-task steps."""
