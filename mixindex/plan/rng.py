"""Counter-based randomness of our own (S3, S4, S6).

Everything random in a plan is a pure function of ``(seed, what, counter)`` built from the
splitmix64 finaliser, in wrapping uint64 arithmetic. numpy promises stable output only for raw bit
generator streams (NEP 19), not for ``Generator.permutation``; these functions use only integer
operations, so their output is the same on every machine and numpy version.

Keys are derived by hashing, never by adding the seed to a counter, so seeds 42 and 43 give
unrelated streams rather than one stream shifted by a block.
"""

from __future__ import annotations

import numpy as np

_M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_U = np.uint64

# Domain-separation salts: each use of the seed gets its own key.
SALT_BLOCK = 0x6D69786964780001
SALT_ROWS = 0x6D69786964780002


def mix64(x: int) -> int:
    """splitmix64 finaliser on one Python int (wrapping to 64 bits)."""
    z = (x + GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix64_array(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on a uint64 array (a new array)."""
    z = x + _U(GOLDEN)
    z ^= z >> _U(30)
    z *= _U(0xBF58476D1CE4E5B9)
    z ^= z >> _U(27)
    z *= _U(0x94D049BB133111EB)
    z ^= z >> _U(31)
    return z


def derive_key(seed: int, *words: int) -> int:
    """A 64-bit key for ``seed`` and a path of words (salt, source id, epoch, ...)."""
    h = mix64(seed & _M64)
    for w in words:
        h = mix64(h ^ (w & _M64))
    return h


def block_keys(seed: int, blocks: np.ndarray) -> np.ndarray:
    """One uint64 key per block number."""
    base = derive_key(seed, SALT_BLOCK)
    return mix64_array(np.asarray(blocks, dtype=np.uint64) * _U(GOLDEN) ^ _U(base))


def below(r: np.ndarray, m: np.ndarray | int) -> np.ndarray:
    """``floor(r * m / 2^64)`` for uint64 ``r`` and ``m < 2^32``: an index in ``[0, m)`` from 64
    random bits (multiply-high, split in 32-bit halves so that nothing overflows)."""
    mm = np.asarray(m, dtype=np.uint64)
    low = ((r & _U(0xFFFFFFFF)) * mm) >> _U(32)
    return np.asarray(((r >> _U(32)) * mm + low) >> _U(32))


def shuffle_blocks(
    seed: int, first_block: int, counts: np.ndarray, block_size: int, dtype: np.dtype
) -> np.ndarray:
    """Each block's slots (blocks x ``block_size`` source ids of ``dtype``) in shuffled order.

    Block ``b``'s slots start as ``counts[b, s]`` copies of each source id ``s``, in source
    order, and go through a Fisher-Yates shuffle: step ``i`` (from ``block_size - 1`` down to 1)
    swaps slot ``i`` with slot ``below(mix64(key + i * GOLDEN), i + 1)``, ``key`` being the
    block's key. A pure function of ``(seed, block, counts)`` in O(block_size) integer steps.
    This numpy form (one step for all blocks at once) is the reference of the compiled kernel.
    """
    nblocks, k = counts.shape
    keys = block_keys(seed, np.arange(first_block, first_block + nblocks, dtype=np.uint64))
    tile = np.tile(np.arange(k, dtype=dtype), nblocks)
    slots = np.repeat(tile, np.asarray(counts).ravel()).reshape(nblocks, block_size)
    blocks = np.arange(nblocks)
    for i in range(block_size - 1, 0, -1):
        j = below(mix64_array(keys + _U((i * GOLDEN) & _M64)), i + 1).astype(np.int64)
        here = slots[:, i].copy()
        slots[:, i] = slots[blocks, j]
        slots[blocks, j] = here
    return slots


def domain_bits(n: np.ndarray) -> np.ndarray:
    """The width of the smallest power-of-two domain holding ``n`` values (at least 2 bits)."""
    bits = np.array([max(2, (int(v) - 1).bit_length()) for v in np.asarray(n).ravel()])
    return bits.astype(np.uint64).reshape(np.shape(n))


# Round constants of the Feistel network: an odd multiplier and a key tweak per round.
_ROUND_MUL = tuple(_U(mix64(r) | 1) for r in range(1, 5))
_ROUND_XOR = tuple(_U(mix64(r + 100)) for r in range(1, 5))


def permute_rows(
    keys: np.ndarray, index: np.ndarray, n: np.ndarray | int, bits: np.ndarray | int
) -> np.ndarray:
    """Stateless permutation of ``[0, n)``: element ``index`` of the permutation keyed by ``keys``.

    ``keys`` and ``index`` are arrays of one length; ``n`` and ``bits`` (:func:`domain_bits` of
    ``n``) are arrays of that length or single values. A four-round Feistel network on the
    smallest power of two above ``n``, ``2^bits``, walked until the value falls inside ``[0, n)``
    (cycle walking keeps it a bijection of ``[0, n)``; the domain is less than twice ``n``, so a
    value takes fewer than two passes on average). For an odd width the halves differ by a bit
    (an unbalanced network: the halves swap widths at each round). The round function is a
    keyed multiply-shift: the high bits of a 64-bit product, which depend on every bit of the
    input.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    n = np.asarray(n, dtype=np.uint64)
    bits = np.asarray(bits, dtype=np.uint64)
    out = _feistel(keys, np.asarray(index, dtype=np.uint64), bits)
    todo = np.flatnonzero(out >= n)
    while todo.size:
        # n and bits are either one value for all (ndim 0) or one per element.
        n_t = n if n.ndim == 0 else n[todo]
        v = _feistel(keys[todo], out[todo], bits if bits.ndim == 0 else bits[todo])
        out[todo] = v
        todo = todo[v >= n_t]
    return out


def _feistel(k: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    # Left half of ``a`` bits, right of ``b`` (a = b for an even width). Each round maps
    # (left, right) to (right, left ^ F(right)), F giving as many bits as the left half had, so
    # the widths swap at each round and are back in place after four.
    a = (w + _U(1)) >> _U(1)
    b = w >> _U(1)
    left = v >> b
    right = v & ((_U(1) << b) - _U(1))
    f = np.empty_like(v)
    for r, (mul, tweak) in enumerate(zip(_ROUND_MUL, _ROUND_XOR, strict=True)):
        np.bitwise_xor(k, tweak, out=f)
        f ^= right
        f *= mul
        f >>= _U(64) - (b if r % 2 else a)
        f ^= left
        left, right, f = right, f, left
    left <<= b
    left |= right
    return np.asarray(left)
