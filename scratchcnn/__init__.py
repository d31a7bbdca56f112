"""scratchcnn: a CNN framework written from scratch in NumPy, with Numba CPU and CUDA kernels."""
