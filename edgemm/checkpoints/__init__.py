"""The shipped default teacher checkpoint (made by `edgemm train` with the seed in its config)."""
