"""Category trees: class sets, the tree model and format, the tree-source registry."""
