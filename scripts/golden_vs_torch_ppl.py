#!/usr/bin/env python3
"""Golden (packed, integer) vs torch float perplexity on the first validation windows (docs/model-card.md).
Run: PYTHONPATH=python .venv/bin/python scripts/golden_vs_torch_ppl.py  (expects data/corpus/val.txt,
/work/bundled-hf and python/mmfree/data/bundled.safetensors)."""
import numpy as np, torch, math, time
from mmfree.golden import GoldenModel
from mmfree.model import HGRNBit
from mmfree.train import TokenData, tokenize_corpus
vt = tokenize_corpus('data/corpus/val.txt', '/work/bundled-hf/tokenizer.json', cache_dir='data/tok')
W = TokenData(vt).windows(512, 64)
g = GoldenModel('python/mmfree/data/bundled.safetensors')
m = HGRNBit.from_pretrained('/work/bundled-hf').eval()
gn = tn = 0.0; n = 0; agree = 0
t0 = time.time()
for w in W:
    g.reset()
    lg = np.asarray(g.forward(w[:-1].tolist()), np.float64)
    lg = lg - lg.max(-1, keepdims=True); lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    gn -= lp[np.arange(512), w[1:]].sum()
    with torch.no_grad():
        tl = torch.log_softmax(m(torch.from_numpy(w[None, :-1]), parallel_scan=False)[0].double(), -1).numpy()
    tn -= tl[np.arange(512), w[1:]].sum()
    agree += (tl.argmax(-1) == lp.argmax(-1)).sum(); n += 512
print(f"windows {len(W)} tokens {n}: golden ppl {math.exp(gn/n):.3f}  torch ppl {math.exp(tn/n):.3f}  top1 agreement {agree/n:.4f}  ({time.time()-t0:.0f}s CPU)")
