"""Speed paths for training: varlen attention, token-budget batches, micro-batch fusion, fused kernels.

Each module is wired into the sft recipe by one small hook; every path has an exact CPU reference so its
correctness is tested without a GPU.
"""
