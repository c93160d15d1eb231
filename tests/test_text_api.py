"""Text in, text out (mmfree.generate.stream_text / generate_text / TextGeneration): the README's
Python example, on the bundled model and its tokenizer."""

import pytest

from mmfree.generate import GREEDY, Sampling, TextGeneration, generate_text, stream_text

pytest.importorskip("tokenizers")


def test_stream_equals_generate_and_emu_equals_golden(csim_lib):
    pieces = list(stream_text("The kernel", max_new_tokens=12, backend="emu"))
    assert len(pieces) >= 2 and all(isinstance(p, str) and p for p in pieces)
    text = "".join(pieces)
    assert text.strip(), "the bundled model with its tokenizer must produce readable text"
    assert generate_text("The kernel", max_new_tokens=12, backend="golden") == text
    s = Sampling(temperature=0.8, top_k=40, seed=3)
    a = generate_text("A function is", max_new_tokens=10, backend="emu", sampling=s)
    b = generate_text("A function is", max_new_tokens=10, backend="golden", sampling=s)
    assert a == b and a != generate_text("A function is", max_new_tokens=10, backend="golden",
                                         sampling=Sampling(temperature=0.8, top_k=40, seed=4))


def test_result_and_an_open_backend_stays_open(csim_lib):
    from mmfree.backends import make_backend
    from mmfree.generate import default_model
    b = make_backend("golden", default_model())
    g = TextGeneration("Once upon a time", backend=b, max_new_tokens=5, sampling=GREEDY)
    text = "".join(g)
    r = g.result
    assert r.text == text and len(r.tokens) <= 5 and r.prompt_ids[0] == 1   # <s> first, from the tokenizer
    assert g.tokenizer.decode(r.prompt_ids) == "Once upon a time"
    assert len(b.prefill([1, 2])) == b.vocab_size   # still open: the caller's backend is not closed
    b.close()


def test_prompt_must_be_text():
    from mmfree.errors import ConfigError
    with pytest.raises(ConfigError, match="text"):
        generate_text([1, 2, 3], backend="golden")
