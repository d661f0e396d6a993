import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# two cores here: one torch thread keeps test timings steady and leaves the other core free
torch.set_num_threads(1)
