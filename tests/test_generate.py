"""mmfree.generate and mmfree.tokenizer: sampling masks, temperature, seeds; the generation loop
(EOS, max tokens, streaming, reset between prompts, timings) on the golden and torch backends."""

import numpy as np
import pytest

from mmfree.errors import ConfigError
from mmfree.generate import (GREEDY, Generation, Sampling, generate, sample_probs, sample_token, softmax,
                             top_k_mask, top_p_mask)


def test_top_k_mask():
    z = np.array([0.1, 3.0, -1.0, 3.0, 2.0], np.float32)
    assert top_k_mask(z, 1).tolist() == [False, True, False, False, False]   # tie: the lower id
    assert top_k_mask(z, 3).tolist() == [False, True, False, True, True]
    assert top_k_mask(z, 0).all() and top_k_mask(z, 5).all() and top_k_mask(z, 99).all()


def test_top_p_mask():
    p = np.array([0.05, 0.5, 0.2, 0.25])
    assert top_p_mask(p, 0.5).tolist() == [False, True, False, False]
    assert top_p_mask(p, 0.51).tolist() == [False, True, False, True]
    assert top_p_mask(p, 0.75).tolist() == [False, True, False, True]
    assert top_p_mask(p, 0.76).tolist() == [False, True, True, True]
    assert top_p_mask(p, 1e-9).sum() == 1                 # the most probable id always stays
    assert top_p_mask(p, 1.0).all()


def test_sample_probs_temperature_topk_topp():
    z = np.array([1.0, 2.0, 3.0, 0.0])
    base = sample_probs(z, Sampling(temperature=1.0))
    assert np.allclose(base, softmax(z)) and abs(base.sum() - 1) < 1e-12
    cold = sample_probs(z, Sampling(temperature=0.1))
    hot = sample_probs(z, Sampling(temperature=10.0))
    assert cold[2] > base[2] > hot[2] and hot.max() - hot.min() < base.max() - base.min()
    k2 = sample_probs(z, Sampling(top_k=2))
    assert k2[0] == 0 and k2[3] == 0 and np.isclose(k2.sum(), 1) and np.isclose(k2[2] / k2[1], np.e)
    pp = sample_probs(z, Sampling(top_p=0.6))             # softmax: [.09, .24, .64, .03] -> keep id 2 only
    assert pp.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_sampling_validation():
    for kw in ({"temperature": -1}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ConfigError):
            Sampling(**kw)
    assert Sampling(temperature=0).is_greedy and GREEDY.is_greedy


def test_seed_reproducibility_and_distribution():
    rng_logits = np.random.default_rng(0).normal(size=50).astype(np.float32)
    s = Sampling(temperature=0.8, top_k=10, top_p=0.9, seed=123)

    def draw(seed, n=200):
        rng = np.random.default_rng(seed)
        return [sample_token(rng_logits, rng, s) for _ in range(n)]

    a, b, c = draw(123), draw(123), draw(124)
    assert a == b and a != c
    allowed = set(np.flatnonzero(sample_probs(rng_logits, s) > 0).tolist())
    assert set(a) <= allowed and len(allowed) <= 10
    # frequencies follow the distribution
    probs = sample_probs(rng_logits, Sampling(temperature=1.0))
    rng = np.random.default_rng(7)
    n = 20000
    counts = np.bincount([sample_token(rng_logits, rng, Sampling(temperature=1.0)) for _ in range(n)], minlength=50)
    assert np.abs(counts / n - probs).max() < 0.02
    assert sample_token(rng_logits, None, GREEDY) == int(np.argmax(rng_logits))


# ---------------------------------------------------------------------------------------------
# the loop on the golden backend
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def golden(packed_cache):
    from mmfree.backends import GoldenBackend
    _, path = packed_cache("wide", "2bit")
    return GoldenBackend(path)


def test_generation_max_tokens_stream_and_timing(golden):
    from mmfree.golden import GoldenModel

    g = Generation(golden, [1, 2, 3], max_new_tokens=7, eos_token_id=None)
    events = list(g)
    r = g.result
    assert [e.token for e in events] == r.tokens and len(r.tokens) == 7 and r.stop_reason == "max_tokens"
    assert [e.index for e in events] == list(range(7))
    assert r.decode_steps == 6 and r.prefill_s > 0 and r.decode_s > 0
    assert r.prefill_tokens_per_s > 0 and r.decode_tokens_per_s > 0
    assert r.tokens == GoldenModel(golden.packed).greedy([1, 2, 3], 7)
    d = r.as_dict()
    assert set(d) >= {"tokens", "text", "prefill_tokens_per_s", "decode_tokens_per_s"}


def test_generation_stops_at_eos(golden):
    first = generate(golden, [4, 5], 5, eos_token_id=None).tokens
    r = generate(golden, [4, 5], 5, eos_token_id=first[2])
    assert r.tokens == first[:3] and r.stop_reason == "eos"
    r1 = generate(golden, [4, 5], 1, eos_token_id=None)
    assert len(r1.tokens) == 1 and r1.decode_steps == 0 and r1.decode_tokens_per_s is None


def test_reset_between_prompts(golden):
    s = Sampling(temperature=1.0, seed=3)
    a = generate(golden, [9, 8, 7], 5, s).tokens
    generate(golden, [1, 1, 1, 1], 3, s)
    assert generate(golden, [9, 8, 7], 5, s).tokens == a
    # without the reset the state carries over: the continuation differs from a fresh start
    generate(golden, [9, 8, 7], 2, GREEDY)
    c = Generation(golden, [9, 8, 7], 5, GREEDY, reset=False)
    list(c)
    assert c.result.tokens != generate(golden, [9, 8, 7], 5, GREEDY).tokens


def test_bad_prompts(golden):
    with pytest.raises(ConfigError, match="empty"):
        Generation(golden, [], 3)
    with pytest.raises(ConfigError, match="vocabulary"):
        Generation(golden, [golden.vocab_size], 3)


def test_streamed_text_with_byte_tokenizer(golden):
    from mmfree.tokenizer import ByteTokenizer

    tok = ByteTokenizer(golden.vocab_size)
    g = Generation(golden, tok.encode("ab"), 12, Sampling(temperature=2.0, seed=1), tokenizer=tok, eos_token_id=None)
    pieces = "".join(e.text for e in g)
    assert pieces == g.result.text
    assert g.result.text == tok.decode(g.result.tokens)


def test_torch_backend_matches_its_own_steps(packed_cache):
    from mmfree.backends import TorchBackend, make_backend

    pytest.importorskip("torch")                 # host only (the board-side run has none)
    hf, path = packed_cache("tiny", "base3")
    t = make_backend("torch", hf)
    assert isinstance(t, TorchBackend)
    full = t.prefill([3, 4, 5])
    t.reset()
    t.prefill([3, 4])
    stepped = t.step(5)
    assert full.shape == (t.vocab_size,) and full.dtype == np.float32
    assert np.allclose(full, stepped, atol=1e-4)
    r = generate(t, [3, 4, 5], 4, eos_token_id=None)
    assert len(r.tokens) == 4
    with pytest.raises(ConfigError, match="folder"):
        make_backend("torch", path)
    with pytest.raises(ConfigError, match="packed model file"):
        make_backend("golden", hf)
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("fpga", path)


# ---------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------
def test_byte_tokenizer():
    from mmfree.tokenizer import ByteTokenizer, load_tokenizer

    t = ByteTokenizer(300)
    ids = t.encode("héllo €")
    assert ids == list("héllo €".encode()) and t.decode(ids) == "héllo €"
    assert t.decode([104, 300, 105]) == "hi"
    dec = t.stream_decoder()
    pieces = [dec.add(i) for i in "€".encode()]
    assert pieces == ["", "", "€"]
    with pytest.raises(ConfigError, match="vocabulary"):
        ByteTokenizer(101).encode("hello")
    tk = load_tokenizer(None)
    assert tk.kind == "bytes" and "no tokenizer" in tk.describe()
    assert load_tokenizer(json_text='{"x": 1}', force_bytes=True).kind == "bytes"


def _word_tokenizer_json():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "é": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    assert tokenizers
    return tok.to_str()


def test_hf_tokenizer_from_json():
    from mmfree.tokenizer import load_tokenizer

    t = load_tokenizer(json_text=_word_tokenizer_json())
    assert t.kind == "tokenizers" and "tokenizer.json" in t.describe()
    ids = t.encode("hello world")
    assert ids == [3, 4]
    dec = t.stream_decoder()
    text = "".join(dec.add(i) for i in ids) + dec.flush()
    assert text == t.decode(ids) == "hello world"
    with pytest.raises(ConfigError, match="does not load"):
        load_tokenizer(json_text="{not json")
