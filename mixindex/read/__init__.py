"""Serving a built index: the dataset by position, its rows, resume state and sharding, and the
training-loader integrations (PyTorch, Grain, Hugging Face)."""
