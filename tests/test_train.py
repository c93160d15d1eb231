"""mmfree.train: a few CPU steps of a tiny HGRNBit on a tiny corpus written here."""

import json
import math
import os
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from mmfree import train as T  # noqa: E402
from mmfree.model import HGRNBit  # noqa: E402

WORDS = ("the quick brown fox jumps over a lazy dog while seven small cats watch from the old red "
         "barn and the farmer counts his sheep before the rain comes down on the green hills").split()


def _corpus(tmp_path):
    rng = random.Random(0)
    docs = []
    for i in range(120):
        n = rng.randint(5, 12)
        start = rng.randrange(len(WORDS))
        # mostly the fixed word order (learnable), a little noise
        docs.append(" ".join(WORDS[(start + k) % len(WORDS)] if rng.random() > 0.1 else rng.choice(WORDS)
                             for k in range(n * 3)) + ".")
    tr, va = tmp_path / "train.txt", tmp_path / "val.txt"
    tr.write_text("".join(d + "\n\x1e\n" for d in docs[:100]), encoding="utf-8")
    va.write_text("".join(d + "\n\x1e\n" for d in docs[100:]), encoding="utf-8")
    return str(tr), str(va), docs


def _args(tr, va, out, **over):
    kw = dict(train_data=[tr], val_data=[va], out=str(out), vocab_size=300, hidden_size=32, layers=2,
              seq_len=32, batch_size=8, max_steps=30, lr=3e-3, warmup_steps=3, log_every=5, eval_every=10,
              eval_windows=8, save_every=0, device="cpu", threads=2, no_progress=True, seed=7)
    kw.update(over)
    return kw


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    tr, va, docs = _corpus(tmp)
    out = tmp / "run"
    summary = T.train(**_args(tr, va, out))
    return dict(tmp=tmp, tr=tr, va=va, out=out, summary=summary, docs=docs)


def test_documents_and_tokenizer(run):
    docs = list(T.read_documents(run["tr"]))
    assert docs == run["docs"][:100]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(run["out"] / "tokenizer.json"))
    assert [tok.token_to_id(s) for s in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert tok.get_vocab_size() <= 300
    enc = tok.encode("the quick brown fox")
    assert enc.ids[0] == 1 and tok.decode(enc.ids) == "the quick brown fox"
    # token file: every document is <s> ... </s>, and the stream decodes back to the documents
    data = T.TokenData(T.tokenize_corpus(run["tr"], str(run["out"] / "tokenizer.json")))
    ids = np.asarray(data.tokens)
    assert data.meta["documents"] == 100 and ids.dtype == np.uint16
    assert (ids == 1).sum() == 100 and (ids == 2).sum() == 100 and ids[0] == 1 and ids[-1] == 2
    first = ids[1:int(np.argmax(ids == 2))]
    assert tok.decode(first.tolist()) == docs[0]


def test_lr_schedule():
    lrs = [T.lr_at(s, 100, 1e-3, 10, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # monotone cosine decay
    assert lrs[100] == pytest.approx(1e-4) and lrs[55] == pytest.approx(0.55e-3)


def test_loss_decreases_and_files(run):
    out = run["out"]
    rows = T.read_losses(str(out / "losses.csv"))
    train_losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    val_losses = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert int(rows[-1]["step"]) == 30 and int(rows[-1]["tokens"]) == 30 * 8 * 32
    assert val_losses[0] > math.log(200)  # initial: about uniform over the vocabulary
    assert train_losses[-1] < train_losses[0] - 1.0
    assert val_losses[-1] < val_losses[0] - 1.0
    for f in ("config.json", "model.safetensors", "tokenizer.json", T.STATE_FILE, "loss.png", "train_log.json"):
        assert (out / f).exists(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "hgrn_bit" and cfg["hidden_size"] == 32 and cfg["bos_token_id"] == 1


def test_checkpoint_reloads_with_same_logits(run):
    out = str(run["out"])
    state = T.load_training_state(os.path.join(out, T.STATE_FILE))
    from mmfree.config import HGRNBitConfig
    mem = HGRNBit(HGRNBitConfig.from_dict(state["config"]))
    mem.load_state_dict(state["model"])  # the fp32 weights of the in-memory model at the end
    with torch.no_grad():
        for p in mem.parameters():  # what save_pretrained stores: bf16
            p.copy_(p.to(torch.bfloat16).float())
    loaded = HGRNBit.from_pretrained(out)
    mem.eval(), loaded.eval()  # same scan (sequential) in both
    ids = torch.randint(0, mem.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = mem(ids), loaded(ids)
    assert torch.equal(a, b)
    # the perplexity helper agrees with a direct computation on the reloaded model
    vt = T.tokenize_corpus(run["va"], os.path.join(out, "tokenizer.json"))
    res = T.torch_perplexity(out, vt, seq_len=32, batch_size=4, device="cpu")
    w = torch.from_numpy(T.TokenData(vt).windows(32))
    with torch.no_grad():
        lg = loaded(w[:, :-1], parallel_scan=False)
    nll = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), w[:, 1:].reshape(-1)).item()
    assert res["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert res["tokens"] == w[:, 1:].numel() and res["ppl"] < 100
    assert 0 < res["bits_per_byte"] < 8
    text = T.generate(loaded, __import__("tokenizers").Tokenizer.from_file(os.path.join(out, "tokenizer.json")),
                      "the quick", max_new_tokens=8)
    assert isinstance(text, str)


def test_resume_continues_exactly(run, tmp_path):
    """Interrupting after a save and resuming continues from the saved step and gives the same
    weights, bit for bit, as an uninterrupted run of the same schedule."""
    tr, va = run["tr"], run["va"]
    tok = str(run["out"] / "tokenizer.json")
    a, b = tmp_path / "a", tmp_path / "b"
    T.train(**_args(tr, va, a, tokenizer=tok, max_steps=10, eval_every=0))
    T.train(**_args(tr, va, b, tokenizer=tok, max_steps=10, eval_every=0, save_every=5, _stop_at=5))
    s = T.load_training_state(str(b / T.STATE_FILE))
    assert s["step"] == 5 and s["max_steps"] == 10 and s["tokens"] == 5 * 8 * 32
    wb5 = s["model"]
    summary = T.train(**_args(tr, va, b, tokenizer=tok, max_steps=None, eval_every=0, resume=True))
    assert summary["step"] == 10
    wa = T.load_training_state(str(a / T.STATE_FILE))["model"]
    wb = T.load_training_state(str(b / T.STATE_FILE))["model"]
    assert any(not torch.equal(wb5[k], wb[k]) for k in wb)  # it did train after resuming
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    steps = [int(r["step"]) for r in T.read_losses(str(b / "losses.csv"))]
    assert steps == [0, 5, 10]
    ra = T.read_losses(str(a / "losses.csv"))
    rb = T.read_losses(str(b / "losses.csv"))
    assert [r["train_loss"] for r in ra] == [r["train_loss"] for r in rb]
