#!/usr/bin/env python3
"""Goldens for `crates/model/tests/golden_real.rs`, from an independent implementation.

The reference is PyTorch + Hugging Face transformers: transformers reads the Q4_1 GGUF of the
default model itself (gguf-py dequantization, its own Q/K un-permutation, its own tokenizer
conversion) and runs its own `LlamaForCausalLM`. Nothing of thinkjudge is used, except that
`--hf-dir` (optional) compares thinkjudge's converted directory with transformers' weights.

What is recorded (see the README next to this file for the exact command and versions):
  * the token ids of a fixed ChatML prompt and of a fixed continuation (transformers' tokenizer);
  * 24 greedy tokens after the prompt (float64 and float32 runs must agree; the smallest
    top-1/top-2 logit margin over the 24 steps is recorded: a near-tie would make the test
    fragile);
  * the per-token log-probs of the continuation given the prompt, in float64 (the golden),
    with the largest float32-vs-float64 difference of transformers itself (the size of f32
    rounding noise, which justifies the Rust test's tolerance).
"""
import argparse, hashlib, json, os, platform, sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

SYSTEM = "You are a careful judge. Think step by step, then give a verdict."
USER = ("Question: Why is the sky blue?\n"
        "Answer A: Sunlight is scattered by the molecules of the air, and blue light is "
        "scattered much more than red light.\n"
        "Answer B: The sky reflects the color of the oceans.\n"
        "Which answer is better? Explain your reasoning.")
PROMPT = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
          f"<|im_start|>user\n{USER}<|im_end|>\n"
          "<|im_start|>assistant\n")
CONTINUATION = ("<think>Answer A names the physical cause, Rayleigh scattering. Answer B "
                "repeats a common myth.</think>\nVerdict: A<|im_end|>")
NEW_TOKENS = 24


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.inference_mode()
def greedy(model, prompt_ids, steps):
    """Cached greedy decode, no stopping; returns (ids, top1 - top2 logit margin per step)."""
    out = model(torch.tensor([prompt_ids]), use_cache=True)
    ids, margins = [], []
    for step in range(steps):
        logits = out.logits[0, -1]
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        nxt = int(torch.argmax(logits))
        ids.append(nxt)
        if step + 1 < steps:
            out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
    return ids, margins


@torch.inference_mode()
def continuation_logprobs(model, prompt_ids, cont_ids):
    ids = torch.tensor([prompt_ids + cont_ids])
    logits = model(ids).logits[0]                        # (N, V)
    logp = torch.log_softmax(logits.double(), dim=-1)    # f64 for the normalisation
    pos = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)
    return logp[pos, ids[0, pos + 1]].tolist()


def sensitivity(d, f, prompt_ids, cont_ids):
    """How far do plausible implementation bugs move the continuation's log-probs (f32)?"""
    def load(**overrides):
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, **overrides).eval()

    base = continuation_logprobs(load(), prompt_ids, cont_ids)
    cases = {}
    m = load()
    m.config.rms_norm_eps = 1e-6  # read by the norms at construction: patch the modules
    for mod in m.modules():
        if hasattr(mod, "variance_epsilon"):
            mod.variance_epsilon = 1e-6
    cases["rms_norm_eps 1e-5 -> 1e-6"] = m
    cases["rope_theta 1e5 -> 1e4"] = load(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    m = load()
    with torch.no_grad():  # layer 0's q_proj left in llama.cpp's permuted row order
        w = m.model.layers[0].self_attn.q_proj.weight
        n = m.config.num_attention_heads
        w.copy_(w.reshape(n, 2, w.shape[0] // n // 2, -1).swapaxes(1, 2).reshape(w.shape))
    cases["layer 0 q_proj not un-permuted"] = m
    for name, model in cases.items():
        lp = continuation_logprobs(model, prompt_ids, cont_ids)
        print(f"{name}: max |delta logprob| = {max(abs(x - y) for x, y in zip(lp, base)):.3e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--hf-dir", help="thinkjudge's converted directory, to compare weights (optional)")
    ap.add_argument("--out", required=True, help="JSON to write")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sensitivity", action="store_true",
                    help="only print how far plausible bugs move the log-probs (writes nothing)")
    a = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    m32 = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    assert m32.config.tie_word_embeddings
    # The chat template renders the same string (so PROMPT is ordinary ChatML).
    rendered = tok.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        tokenize=False, add_generation_prompt=True)
    assert rendered == PROMPT, (rendered, PROMPT)
    prompt_ids = tok(PROMPT, add_special_tokens=False).input_ids
    cont_ids = tok(CONTINUATION, add_special_tokens=False).input_ids
    assert tok.decode(prompt_ids) == PROMPT and tok.decode(cont_ids) == CONTINUATION

    if a.sensitivity:
        sensitivity(d, f, prompt_ids, cont_ids)
        return

    weight_check = None
    if a.hf_dir:
        hf = AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32)
        sa, sb = m32.state_dict(), hf.state_dict()
        assert sa.keys() == sb.keys(), set(sa.keys()) ^ set(sb.keys())
        weight_check = max(float((sa[k] - sb[k]).abs().max()) for k in sa)
        print(f"max |transformers(GGUF) - thinkjudge conversion| over all weights: {weight_check}",
              file=sys.stderr)
        del hf

    m64 = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).double().eval()
    g64, margins = greedy(m64, prompt_ids, NEW_TOKENS)
    g32, _ = greedy(m32, prompt_ids, NEW_TOKENS)
    assert g64 == g32, (g64, g32)
    # transformers' own generate() agrees with the hand-written loop (when no EOS cuts it short).
    with torch.inference_mode():
        gen = m32.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                           max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(prompt_ids):].tolist()
    assert gen == g32[:len(gen)], (gen, g32)
    lp64 = continuation_logprobs(m64, prompt_ids, cont_ids)
    lp32 = continuation_logprobs(m32, prompt_ids, cont_ids)
    f32_noise = max(abs(x - y) for x, y in zip(lp32, lp64))

    out = {
        "generated_by": "crates/model/tests/golden/make_goldens.py (see README.md there)",
        "reference": "transformers LlamaForCausalLM loaded from the GGUF (gguf_file=...), CPU",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__,
                     "gguf": __import__("importlib.metadata").metadata.version("gguf")},
        "gguf_sha256": sha256(a.gguf),
        "prompt": PROMPT,
        "prompt_ids": prompt_ids,
        "greedy": {
            "new_tokens": NEW_TOKENS,
            "ids": g64,
            "text": tok.decode(g64),
            "min_top2_margin_f64": min(margins),
        },
        "continuation": CONTINUATION,
        "continuation_ids": cont_ids,
        "logprobs_f64": lp64,
        "logprobs_f32": lp32,
        "transformers_f32_vs_f64_max_abs": f32_noise,
        "converted_dir_vs_transformers_max_abs_weight": weight_check,
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: out[k] for k in ("greedy", "transformers_f32_vs_f64_max_abs",
                                          "converted_dir_vs_transformers_max_abs_weight")}, indent=1),
          file=sys.stderr)


if __name__ == "__main__":
    main()
