"""Counter-based random numbers: the same dropout mask on every backend.

A dropout mask drawn from a stateful generator would differ between NumPy, the
CPU threads and the GPU threads. Instead every element ``i`` of the mask for
training step ``counter`` gets its own number ``splitmix64(key + i)``, a pure
function of ``(seed, counter, i)`` that any thread can compute on its own
(Salmon et al., 2011, "Parallel random numbers: as easy as 1, 2, 3", SC'11;
the mixing function is SplitMix64, Steele, Lea & Flood, 2014, OOPSLA).

The scalar functions are plain Python on ``np.uint64`` values so that NumPy
runs them on whole arrays and Numba compiles them for CPU and CUDA unchanged.
"""
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_TWO_POW_M24 = np.float32(1.0 / (1 << 24))


def splitmix64(z):
    """SplitMix64 finaliser: a bijective mix of a uint64 (wraps modulo 2**64)."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def stream_key(seed, counter):
    """The uint64 key of one (seed, counter) stream, e.g. one dropout layer at one step."""
    return splitmix64(splitmix64(np.uint64(seed)) + np.uint64(counter))


def uniform(key, i):
    """A float32 in [0, 1) with 24 random bits, for element ``i`` of stream ``key``."""
    return np.float32(splitmix64(key + np.uint64(i)) >> _S40) * _TWO_POW_M24
