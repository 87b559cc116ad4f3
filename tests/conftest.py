"""Suite-wide settings."""
import os

import torch

# One thread everywhere (this process, subprocesses, Ray workers): on a 2-core machine an
# OpenMP team of 2 slows down 30x or more as soon as any other process wants a core.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
