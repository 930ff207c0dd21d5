import constriction
import numpy as np
import pytest

from vqcodec.entropy.cdf import ideal_bits_of, quantize_pmf
from vqcodec.entropy.coder import (
    CodingTables,
    SymbolDecoder,
    decode_symbols,
    effective_cdf24,
    encode_batches,
    encode_symbols,
)
from vqcodec.errors import FormatError


def _sample(rng, freqs, tables):
    cdf = np.cumsum(freqs, axis=1)
    u = rng.integers(0, cdf[0, -1], size=tables.shape[0])
    return (cdf[tables] <= u[:, None]).sum(axis=1)


def test_random_round_trips():
    rng = np.random.default_rng(1)
    for _ in range(200):
        k = int(rng.integers(1, 300))
        t = int(rng.integers(1, 6))
        n = int(rng.integers(0, 500))
        freqs = quantize_pmf(rng.dirichlet(np.full(k, rng.uniform(0.05, 2.0)), size=t), 16)
        tables = rng.integers(0, t, n)
        symbols = _sample(rng, freqs, tables)
        data = encode_symbols(symbols, tables, freqs)
        out = decode_symbols(data, tables, freqs)
        assert out.dtype == np.int32
        assert np.array_equal(out, symbols)


def test_edge_cases():
    freqs = quantize_pmf(np.array([[1.0, 1e-12, 0.0, 5.0]]), 16)
    # near-zero probability symbols still round-trip
    symbols = np.array([1, 2, 1, 2, 0, 3])
    tables = np.zeros(6, dtype=np.int64)
    assert np.array_equal(decode_symbols(encode_symbols(symbols, tables, freqs), tables, freqs), symbols)
    # empty stream
    empty = np.zeros(0, dtype=np.int64)
    assert encode_symbols(empty, empty, freqs) == b""
    assert decode_symbols(b"", empty, freqs).shape == (0,)
    with pytest.raises(FormatError):
        decode_symbols(b"\x01", empty, freqs)
    # one-symbol alphabet: zero bits
    one = quantize_pmf(np.ones((1, 1)), 16)
    assert encode_symbols(np.zeros(1000, int), np.zeros(1000, int), one) == b""
    assert np.all(decode_symbols(b"", np.zeros(1000, int), one) == 0)


def test_padded_tables_and_invalid_symbols():
    freqs = np.zeros((2, 8), dtype=np.int64)
    freqs[0] = quantize_pmf(np.arange(1, 9), 16)
    freqs[1, :3] = quantize_pmf([1.0, 2.0, 3.0], 16)
    ct = CodingTables(freqs)
    assert ct.sizes.tolist() == [8, 3]
    tables = np.array([0, 1, 1, 0])
    symbols = np.array([7, 2, 0, 5])
    assert np.array_equal(decode_symbols(encode_symbols(symbols, tables, ct), tables, ct), symbols)
    with pytest.raises(ValueError):
        encode_symbols(np.array([3]), np.array([1]), ct)  # beyond table 1's alphabet
    with pytest.raises(ValueError):
        encode_symbols(np.array([0]), np.array([2]), ct)  # no such table
    with pytest.raises(ValueError):
        encode_symbols(np.array([-1]), np.array([0]), ct)


def test_size_close_to_ideal():
    rng = np.random.default_rng(2)
    freqs = quantize_pmf(rng.dirichlet(np.full(1024, 0.2), size=4), 16)
    tables = rng.integers(0, 4, 50_000)
    symbols = _sample(rng, freqs, tables)
    ideal = ideal_bits_of(symbols, tables, freqs) / 8
    size = len(encode_symbols(symbols, tables, freqs))
    assert ideal <= size <= ideal * 1.001 + 8


def test_batches_decode_in_order():
    rng = np.random.default_rng(3)
    freqs = quantize_pmf(rng.dirichlet(np.ones(50), size=3), 14)
    batches = []
    for _ in range(4):
        t = rng.integers(0, 3, 100)
        batches.append((_sample(rng, freqs, t), t))
    data = encode_batches(batches, freqs)
    dec = SymbolDecoder(data, freqs)
    for symbols, t in batches:
        assert np.array_equal(dec.decode(t), symbols)
    dec.finish()


def test_constriction_model_matches_effective_cdf():
    """Pins the bit-exactness argument of coder.py: constriction's 24-bit model of our table is
    exactly ``effective_cdf24``, an integer function of our integers.  Decoding one symbol from
    a head whose low 24 bits are q returns the symbol whose cdf interval contains q."""
    rng = np.random.default_rng(4)
    for k in (2, 3, 300, 1024):
        f = quantize_pmf(rng.dirichlet(np.full(k, 0.2)), 16)
        model = CodingTables(f[None]).model(0)
        cdf = effective_cdf24(f)
        assert np.all(np.diff(cdf) >= 1) and cdf[-1] == 1 << 24
        for i in rng.integers(1, k, size=min(k - 1, 40)):
            for q, want in ((int(cdf[i]), int(i)), (int(cdf[i]) - 1, int(i) - 1)):
                coder = constriction.stream.stack.AnsCoder(np.array([q, 1], dtype=np.uint32))
                assert int(coder.decode(model, 1)[0]) == want


def test_corruption_and_truncation_raise():
    rng = np.random.default_rng(5)
    freqs = quantize_pmf(rng.dirichlet(np.full(256, 0.3), size=2), 16)
    tables = rng.integers(0, 2, 3000)
    symbols = _sample(rng, freqs, tables)
    data = encode_symbols(symbols, tables, freqs)
    for cut in (1, 3, 4, 5, 50):
        with pytest.raises(FormatError):
            decode_symbols(data[:-cut], tables, freqs)
        with pytest.raises(FormatError):
            decode_symbols(data[cut:], tables, freqs)
    for pos in rng.integers(0, len(data), 40):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(FormatError):
            decode_symbols(bytes(bad), tables, freqs)
    with pytest.raises(FormatError):
        decode_symbols(data + b"\x07\x00\x00\x00", tables, freqs)


def _reference_decode(body: bytes, tables: list[int], freqs: np.ndarray) -> list[int]:
    """Pure-Python decoder written from formats/vqc-v1.md ("Entropy payload", Body: rANS)."""
    rows = []
    for row in freqs.tolist():
        row = [f for f in row if f > 0]
        total, k = sum(row), len(row)
        cum = [0]
        for f in row:
            cum.append(cum[-1] + f)
        c24 = [cum[i] * ((1 << 24) - k) // total + i for i in range(k)] + [1 << 24]
        rows.append(c24)
    padded = body + b"\0" * (-len(body) % 4)
    words = [int.from_bytes(padded[i : i + 4], "little") for i in range(0, len(padded), 4)]
    x = 0
    if words:
        x = words.pop()
        assert x != 0
        while x < 1 << 32 and words:
            x = (x << 32) | words.pop()
    # symbols are coded grouped by table, in increasing table order
    order = sorted(range(len(tables)), key=lambda i: (tables[i], i))
    out = [0] * len(tables)
    for i in order:
        c24 = rows[tables[i]]
        if len(c24) == 2:  # one-symbol table: no bits
            continue
        q = x & ((1 << 24) - 1)
        s = max(j for j in range(len(c24) - 1) if c24[j] <= q)
        x = (x >> 24) * (c24[s + 1] - c24[s]) + q - c24[s]
        if x < 1 << 32 and words:
            x = (x << 32) | words.pop()
        out[i] = s
    assert x == 0 and not words
    return out


def test_spec_reference_decoder_agrees():
    rng = np.random.default_rng(6)
    freqs = np.zeros((3, 20), dtype=np.int64)
    freqs[0] = quantize_pmf(rng.dirichlet(np.full(20, 0.3)), 16)
    freqs[1, :5] = quantize_pmf(rng.dirichlet(np.ones(5)), 16)
    freqs[2, :1] = 1 << 16
    for n in (0, 1, 7, 300):
        tables = rng.integers(0, 3, n)
        symbols = _sample(rng, freqs, tables)
        body = encode_symbols(symbols, tables, freqs)
        assert _reference_decode(body, tables.tolist(), freqs) == symbols.tolist()


def test_grouping_strategies_give_identical_bytes(monkeypatch):
    import vqcodec.entropy.coder as coder_module

    rng = np.random.default_rng(7)
    freqs = quantize_pmf(rng.dirichlet(np.full(30, 0.5), size=40), 16)
    tables = rng.integers(0, 40, 3000)
    symbols = _sample(rng, freqs, tables)
    few = tables % 5
    reference = {name: encode_symbols(symbols, t, freqs) for name, t in (("many", tables), ("few", few))}
    for limit in (0, 1000):  # force the sort path, then the comparison path
        monkeypatch.setattr(coder_module, "FEW_TABLES", limit)
        for name, t in (("many", tables), ("few", few)):
            assert encode_symbols(symbols, t, freqs) == reference[name]
            assert np.array_equal(decode_symbols(reference[name], t, freqs), symbols)
    order = np.argsort(tables, kind="stable")  # already sorted tables take the slice path
    assert np.array_equal(decode_symbols(encode_symbols(symbols[order], tables[order], freqs), tables[order],
                                         freqs), symbols[order])
