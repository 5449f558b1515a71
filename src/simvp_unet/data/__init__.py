"""Data: the on-disk layout (`layout`), PyTorch datasets (`datasets`), the PyBullet scene
generator (`generate`) and packed memory-mapped splits (`pack`)."""
