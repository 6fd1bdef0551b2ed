"""The shipped checkpoints: the teachers (`edgemm train`, 8 and 16 epochs) and the student distilled from both."""
