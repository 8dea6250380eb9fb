"""Training: settings declared once, setup and restore, one epoch, the loop, checkpoints."""
