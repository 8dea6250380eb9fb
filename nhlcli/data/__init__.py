"""Image folders, decoding and batch augmentation for training and evaluation."""
