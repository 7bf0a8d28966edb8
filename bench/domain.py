"""Domain-model benchmark: decode speed, time to first token, quality, memory and adapter swaps.

    .venv/bin/python -m bench.domain            # 3 prompts x 64 new tokens per configuration
    .venv/bin/python -m bench.domain --quick    # 1 prompt x 32 tokens, short swap test

Every configuration runs the bundled SmolLM2-135M-Instruct in the same process, on the same
prompts: plain float32 `generate` (the baseline), bf16, int8 dynamic quantization, our HF
backend as served (bf16, static cache, guard and streaming on), and llama.cpp on the same GGUF
(raw, and as served with n-gram blocking). Quality is the teacher-forced loss on fixed plant-care
texts and the greedy words shared with the float32 baseline. Peak RSS is measured in a fresh
subprocess per backend. The swap test promotes adapters while customers keep asking.
Figures go to docs/benchmarks/domain.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "domain.md"
STATE = REPO / "bench" / "out" / "domain-var"
PROMPTS = [
    "How often should I water a Masdevallia orchid?",
    "Why are the pitchers on my Nepenthes turning brown?",
    "What soil should I use when repotting an Echeveria?",
]
QUALITY_TEXTS = [
    "Masdevallia orchids grow in cool cloud forests. Keep the potting mix evenly moist and never let "
    "it dry out completely; water two or three times a week in summer and a little less in winter.",
    "Venus flytraps need rain water or distilled water, full sun and a cold dormancy period in winter. "
    "Tap water full of minerals slowly kills them.",
    "Succulents such as Echeveria rot in wet soil. Use a gritty mix of cactus soil and pumice, water "
    "deeply, and wait until the soil is completely dry before watering again.",
]


def settings_for(state_dir: Path, **domain: Any) -> Any:
    from bot.config import load_settings

    overrides = {"app.state_dir": str(state_dir), "models.cache_dir": str(STATE / "models")}
    overrides.update({f"domain.{k}": v for k, v in domain.items()})
    return load_settings(None, env={}, overrides=overrides)


def chat(prompt: str, system: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def hf_plain(model_dir: Path, dtype: str, quantize: bool, prompts: list[str], tokens: int, system: str) -> dict[str, Any]:
    """HF `generate` as a user would call it (no guard, no penalties), with a timing streamer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype)).eval()
    if quantize:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.at = 0.0

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls == 2:
                self.at = time.perf_counter()

        def end(self) -> None:
            return None

    speeds, ttfts, texts = [], [], []
    for i, prompt in enumerate(["warm up"] + prompts):
        text = tok.apply_chat_template(chat(prompt, system), tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        streamer = FirstToken()
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=tokens if i else 4, do_sample=False, streamer=streamer,
                                 temperature=None, top_p=None, top_k=None)
        elapsed = time.perf_counter() - started
        if i == 0:
            continue
        new = out[0, enc["input_ids"].shape[1]:]
        speeds.append(len(new) / elapsed)
        ttfts.append(streamer.at - started)
        texts.append(tok.decode(new, skip_special_tokens=True))
    return {"tok_s": statistics.mean(speeds), "ttft_s": statistics.mean(ttfts), "texts": texts,
            "nll": hf_nll(model, tok)}


def hf_nll(model: Any, tok: Any) -> float:
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for text in QUALITY_TEXTS:
            ids = tok(text, return_tensors="pt").input_ids
            loss = model(ids, labels=ids).loss.float().item()
            total += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return total / count


def served(loaded: Any, prompts: list[str], tokens: int, system: str, policy: Any) -> dict[str, Any]:
    """A backend as the bot runs it: config's penalties, the guard's early stop, streaming on."""
    from bot.llm.backend import GenerationParams
    from bot.llm.guard import should_stop_early

    params = GenerationParams(max_new_tokens=tokens, repetition_penalty=1.15, no_repeat_ngram_size=4)
    loaded.generate(chat("warm up", system), GenerationParams(max_new_tokens=4))
    speeds, ttfts, texts = [], [], []
    for prompt in prompts:
        result = loaded.generate(chat(prompt, system), params, lambda text: None,
                                 lambda text: should_stop_early(text, policy))
        speeds.append(result.new_tokens / result.seconds)
        ttfts.append(result.first_token_s)
        texts.append(result.text)
    return {"tok_s": statistics.mean(speeds), "ttft_s": statistics.mean(ttfts), "texts": texts}


def stream_chat(llm: Any, prompt: str, tokens: int, system: str) -> tuple[float, float, str]:
    """One greedy streamed chat completion through llama-cpp-python: (tokens/s, first token s, text)."""
    started = time.perf_counter()
    first, count, text = 0.0, 0, ""
    for chunk in llm.create_chat_completion(chat(prompt, system), max_tokens=tokens, temperature=0.0,
                                            repeat_penalty=1.0, stream=True):
        piece = chunk["choices"][0]["delta"].get("content") or ""
        if piece:
            count += 1
            text += piece
            first = first or time.perf_counter() - started
    return count / (time.perf_counter() - started), first, text


def llamacpp_raw(gguf: Path, prompts: list[str], tokens: int, system: str, threads: int,
                 lora: Path | None = None) -> dict[str, Any]:
    """llama-cpp-python used directly, as a user would (streamed chat completion), base or + a LoRA GGUF."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=1024, n_threads=threads,
                verbose=False)
    llm.create_chat_completion(chat("warm up", system), max_tokens=4, temperature=0.0)
    speeds, ttfts, texts = [], [], []
    for prompt in prompts:
        speed, first, text = stream_chat(llm, prompt, tokens, system)
        speeds.append(speed)
        ttfts.append(first)
        texts.append(text)
    llm.close()
    # Teacher-forced loss with llama.cpp's own logits, on the HF tokenizer's ids (same vocab).
    scorer = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=1024, n_threads=threads,
                   logits_all=True, verbose=False)
    total, n = 0.0, 0
    for qt in QUALITY_TEXTS:
        ids = scorer.tokenize(qt.encode(), add_bos=False, special=False)
        scorer.reset()
        scorer.eval(ids)
        logits = np.asarray(scorer.scores[: len(ids)], dtype=np.float64)
        logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        total += -sum(logp[i, ids[i + 1]] for i in range(len(ids) - 1))
        n += len(ids) - 1
    scorer.close()
    return {"tok_s": statistics.mean(speeds), "ttft_s": statistics.mean(ttfts), "texts": texts, "nll": total / n}


def interleaved_with_adapter(loaded: Any, gguf: Path, lora: Path, prompts: list[str], tokens: int, system: str,
                             threads: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """llama-cpp-python direct + adapter vs our served model + the same adapter, same greedy decoding.

    The two are a few percent apart while this shared machine's speed drifts by more than that
    between minutes, so they alternate prompt by prompt and each reports its median."""
    from llama_cpp import Llama

    from bot.llm.backend import GenerationParams

    llm = Llama(model_path=str(gguf), lora_path=str(lora), n_ctx=1024, n_threads=threads, verbose=False)

    def direct(prompt: str) -> tuple[float, float, str]:
        return stream_chat(llm, prompt, tokens, system)

    def ours(prompt: str) -> tuple[float, float, str]:
        result = loaded.generate(chat(prompt, system), GenerationParams(max_new_tokens=tokens))
        return result.new_tokens / result.seconds, result.first_token_s, result.text

    direct("warm up")
    ours("warm up")
    runs: dict[str, list[tuple[float, float, str]]] = {"direct": [], "ours": []}
    for _ in range(rounds):
        for prompt in prompts:
            runs["direct"].append(direct(prompt))
            runs["ours"].append(ours(prompt))
    llm.close()

    def summary(values: list[tuple[float, float, str]]) -> dict[str, Any]:
        return {"tok_s": statistics.median(v[0] for v in values), "ttft_s": statistics.median(v[1] for v in values),
                "texts": [v[2] for v in values[: len(prompts)]]}

    return summary(runs["direct"]), summary(runs["ours"])


def shared_words(texts: list[str], reference: list[str], limit: int = 20) -> float:
    """Share of the baseline's first `limit` greedy words that the configuration wrote identically."""
    shares = []
    for text, ref in zip(texts, reference, strict=True):
        a, b = text.split()[:limit], ref.split()[:limit]
        same = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            same += 1
        shares.append(same / max(1, len(b)))
    return statistics.mean(shares)


def rss_probe(backend: str, state_dir: Path) -> None:
    """Run in a subprocess: load the model as served, answer once, report peak RSS (VmHWM)."""
    from bot.answerers.domain_model import build_domain_answerer
    from bot.interfaces import AskContext
    from bot.model_assets import configure_torch_threads

    settings = settings_for(state_dir, backend=backend, max_new_tokens=32)
    configure_torch_threads(settings)
    answerer = build_domain_answerer(settings)
    answerer.warm_up()
    answerer.answer(PROMPTS[0], AskContext())
    answerer.close()
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    sys.stdout.write(json.dumps({"peak_rss_mb": hwm_kb / 1024}) + "\n")


def measure_rss(backend: str, state_dir: Path) -> float | None:
    proc = subprocess.run([sys.executable, "-m", "bench.domain", "--rss-probe", backend, "--state-dir", str(state_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            return float(json.loads(line)["peak_rss_mb"])
    sys.stderr.write(proc.stderr[-2000:])
    return None


def swap_test(state_dir: Path, backend: str, seconds_after: float, swaps: int) -> dict[str, Any]:
    """Customers keep asking while adapters are promoted; count what was served and what failed."""
    import shutil

    from bot.answerers.domain_model import build_domain_answerer
    from bot.errors import AnswererUnavailable
    from bot.interfaces import AskContext
    from bot.registry import ADAPTERS_DIR, adapter_registry
    from bot.testing.tiny_models import make_bundled_shaped_adapter

    swap_state = state_dir / "swap"
    settings = settings_for(swap_state, backend=backend, max_new_tokens=24)
    shutil.rmtree(settings.state_dir / ADAPTERS_DIR, ignore_errors=True)
    registry = adapter_registry(settings)
    answerer = build_domain_answerer(settings)  # serves adapter_registry(settings), as `registry` here
    answerer.warm_up()
    counts = {"served": 0, "during_swap": 0, "fell_back": 0, "failed": 0}
    versions: set[str] = set()
    swapping = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def customer(n: int) -> None:
        while not stop.is_set():
            try:
                draft = answerer.answer(PROMPTS[n % len(PROMPTS)], AskContext())
                key = "served"
                versions.add(draft.model_version)
            except AnswererUnavailable:
                key = "fell_back"
            except Exception:
                key = "failed"
            with lock:
                counts[key] += 1
                if swapping.is_set() and key == "served":
                    counts["during_swap"] += 1

    threads = [threading.Thread(target=customer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    swap_seconds = []
    for i in range(swaps):
        adapter = make_bundled_shaped_adapter(swap_state / f"src-{i}", seed=i, scale=0.02)
        info = registry.add(adapter, {"bench": True})
        started = time.perf_counter()
        swapping.set()
        registry.promote(info.version)
        answerer.refresh_adapter(wait=True)
        swapping.clear()
        swap_seconds.append(time.perf_counter() - started)
        stop.wait(seconds_after)
    stop.set()
    for t in threads:
        t.join()
    answerer.close()
    return {**counts, "swaps": swaps, "swap_s": statistics.mean(swap_seconds), "versions": sorted(versions)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 prompt, 32 tokens, one swap")
    parser.add_argument("--tokens", type=int, default=0, help="new tokens per prompt (default 64, quick 32)")
    parser.add_argument("--state-dir", type=Path, default=STATE, help="where the converted base model is cached")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rss-probe", choices=["hf", "llamacpp"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    from bot.model_assets import base_gguf_path, base_llm_dir, configure_torch_threads, force_offline

    force_offline()
    if args.rss_probe:
        rss_probe(args.rss_probe, args.state_dir)
        return 0
    import torch

    from bot.llm.backend import llama_cpp_available
    from bot.llm.guard import GuardPolicy

    tokens = args.tokens or (32 if args.quick else 64)
    prompts = PROMPTS[:1] if args.quick else PROMPTS
    settings = settings_for(args.state_dir)
    configure_torch_threads(settings)
    threads = torch.get_num_threads()
    system = settings.domain.system_prompt
    policy = GuardPolicy.from_config(settings.domain)
    model_dir = base_llm_dir(settings)
    rows: list[tuple[str, dict[str, Any]]] = []

    def log(label: str, res: dict[str, Any]) -> None:
        rows.append((label, res))
        sys.stderr.write(f"{label}: {res['tok_s']:.1f} tok/s, ttft {res['ttft_s']:.3f}s\n")

    baseline = hf_plain(model_dir, "float32", False, prompts, tokens, system)
    log("HF fp32 `generate` (baseline)", baseline)
    log("HF bf16 `generate`", hf_plain(model_dir, "bfloat16", False, prompts, tokens, system))
    log("HF int8 dynamic `generate`", hf_plain(model_dir, "float32", True, prompts, tokens, system))
    from bot.llm.hf import HFBackend

    hf_model = HFBackend(settings).load(None)
    log("**ours, hf backend** (bf16, static cache, guard, streaming)", served(hf_model, prompts, tokens, system, policy))
    hf_model.close()
    if llama_cpp_available():
        from bot.llm.backend import AdapterRef
        from bot.llm.llamacpp import LlamaCppBackend
        from bot.llm.lora_gguf import ADAPTER_GGUF, peft_adapter_to_gguf
        from bot.testing.tiny_models import make_bundled_shaped_adapter

        gguf = base_gguf_path(settings)
        log("llama.cpp on the same GGUF (raw)", llamacpp_raw(gguf, prompts, tokens, system, threads))
        ll = LlamaCppBackend(settings).load(None)
        log("**ours, llamacpp backend** (n-gram blocking, guard, streaming)", served(ll, prompts, tokens, system, policy))
        ll.close()
        # The same r=16, all-linear adapter (random weights, the shape training writes) both ways.
        adapter_dir = make_bundled_shaped_adapter(args.state_dir / "bench-adapter-r16", seed=7, scale=0.02, rank=16)
        peft_adapter_to_gguf(adapter_dir, gguf, adapter_dir / ADAPTER_GGUF)
        ll = LlamaCppBackend(settings).load(AdapterRef("bench", adapter_dir))
        direct, plain = interleaved_with_adapter(ll, gguf, adapter_dir / ADAPTER_GGUF, prompts, tokens, system,
                                                 threads, rounds=2 if args.quick else 5)
        log("llama.cpp + r=16 adapter GGUF, direct (llama-cpp-python; median, interleaved with the next row)", direct)
        log("**ours, llamacpp + same adapter**, plain greedy (same decoding as direct; median, interleaved)", plain)
        log("**ours, llamacpp + same adapter**, as served (penalty, n-gram blocking, guard)",
            served(ll, prompts, tokens, system, policy))
        ll.close()
        rows.append(("ratio", {"served_vs_direct": plain["tok_s"] / direct["tok_s"]}))
    rss = {name: measure_rss(name, args.state_dir) for name in (["hf", "llamacpp"] if llama_cpp_available() else ["hf"])}
    backend = "llamacpp" if llama_cpp_available() else "hf"
    swap = swap_test(args.state_dir, backend, seconds_after=1.0 if args.quick else 3.0, swaps=1 if args.quick else 3)
    write_report(args, rows, baseline, rss, swap, tokens, prompts, threads)
    return 0


def write_report(args: Any, rows: list[tuple[str, dict[str, Any]]], baseline: dict[str, Any], rss: dict[str, float | None],
                 swap: dict[str, Any], tokens: int, prompts: list[str], threads: int) -> None:
    from bot.atomic import atomic_write_text

    command = ".venv/bin/python -m bench.domain" + (" --quick" if args.quick else "")
    lines = [
        "# Domain model benchmark",
        "",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {platform.node()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {threads}; load average at the end {os.getloadavg()[0]:.1f} (shared machine: skewed)",
        f"- Command: `{command}`",
        f"- Model: bundled SmolLM2-135M-Instruct; {len(prompts)} prompt(s) x up to {tokens} new tokens, greedy",
        "",
        "## Speed and quality (same run, same prompts)",
        "",
        "| configuration | tokens/s | x fp32 | time to first token | loss (nats/token) | greedy words = fp32 |",
        "|---|---|---|---|---|---|",
    ]
    ratio = next((res["served_vs_direct"] for label, res in rows if label == "ratio"), None)
    rows = [(label, res) for label, res in rows if label != "ratio"]
    for label, res in rows:
        nll = f"{res['nll']:.3f}" if "nll" in res else "(as its base row)"
        lines.append(
            f"| {label} | {res['tok_s']:.1f} | {res['tok_s'] / baseline['tok_s']:.2f}x | {res['ttft_s'] * 1000:.0f} ms | "
            f"{nll} | {shared_words(res['texts'], baseline['texts']):.0%} |"
        )
    lines += [
        "",
        "Loss is teacher-forced on fixed plant-care texts (lower is better; it shows whether a faster "
        "configuration is still the same model). \"Greedy words = fp32\": share of the fp32 baseline's first "
        "20 words reproduced exactly (served rows use the repetition penalty and n-gram blocking, so they "
        "differ by design).",
        "",
        *([f"Framework overhead with an adapter: our served path decodes at {ratio:.2f}x llama-cpp-python used "
           "directly with the same adapter and the same greedy decoding (target >= 0.95x).", ""] if ratio else []),
        *([f"Absolute target >= 100 tokens/s: {'met' if best >= 100 else 'not met on this machine'}. The fastest "
           f"row, llama.cpp itself on the shipped GGUF without an adapter, decodes {best:.1f} tokens/s here "
           "(DESIGN.md measured about 140 on its machine); llama.cpp is the ceiling of any served path "
           "(see docs/domain-model.md, \"Speed ceiling\").", ""]
          if (best := max((res["tok_s"] for label, res in rows if "llama.cpp" in label and "raw" in label),
                          default=0.0)) else []),
        "## Peak memory of a serving process (model loaded, one answer)",
        "",
        "| backend | peak RSS |",
        "|---|---|",
    ]
    for name, value in rss.items():
        lines.append(f"| {name} | {value:.0f} MB |" if value else f"| {name} | (probe failed) |")
    lines += [
        "",
        f"## Adapter swap under load ({swap['swaps']} promotions, 3 customers asking continuously)",
        "",
        f"- answers served: {swap['served']} (during a swap: {swap['during_swap']}); failed: {swap['failed']}; "
        f"fell back (guard): {swap['fell_back']}",
        f"- mean promote-to-serving time: {swap['swap_s']:.2f} s; versions that answered: {', '.join(swap['versions'])}",
        "",
        "## Sample answers (fp32 baseline, first prompt)",
        "",
        f"> {baseline['texts'][0].strip()}",
        "",
    ]
    atomic_write_text(args.out, "\n".join(lines))
    sys.stderr.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    sys.exit(main())
