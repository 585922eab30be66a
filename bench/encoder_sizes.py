"""What the encoder setting costs: embedding throughput by model size, max tokens and pooling (docs/encoders.md).

    python bench/encoder_sizes.py [--texts 16] [--rounds 3] [--batch-size 16] [--lengths 64 128 256] [--threads 1]

Models: the bundled MiniLM-L6 (6 layers x 384, its real weights), and randomly initialised BERT encoders of
DistilBERT's shape (6 x 768) and BERT-base's shape (12 x 768: BioBERT, SciBERT, LegalBERT and FinBERT are
BERT-base models), with MiniLM's tokenizer. Throughput depends on the shape, not on the weights, so nothing is
downloaded. Every BBC article used is longer than the largest length, so each batch is full length; one warm-up
batch per setting; texts per second through tokenize + forward + pool (``Encoder.embed``, PyTorch fp32, CPU), the
best of several rounds that interleave every cell (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _bbc import markdown_table, write_results

from training.data import load_bbc_news
from training.encoder import Encoder, EncoderConfig, default_model_dir
from training.encoder_info import inspect_encoder

SHAPES = {  # name -> (layers, hidden, heads, intermediate); None: the bundled MiniLM's own weights
    "MiniLM-L6 (6 x 384)": None,
    "DistilBERT shape (6 x 768)": (6, 768, 12, 3072),
    "BERT-base shape (12 x 768)": (12, 768, 12, 3072),
}


def _model(shape: tuple[int, int, int, int] | None) -> tuple[torch.nn.Module | None, int]:
    if shape is None:
        return None, inspect_encoder(default_model_dir()).num_parameters
    from transformers import BertConfig, BertModel

    layers, hidden, heads, intermediate = shape
    torch.manual_seed(0)
    model = BertModel(BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                                 intermediate_size=intermediate, vocab_size=30522, max_position_embeddings=512))
    return model, sum(p.numel() for p in model.parameters())


def _texts_per_second(encoder: Encoder, texts: list[str], batch_size: int) -> float:
    encoder.embed(texts[:2], batch_size=batch_size)  # warm-up: allocations for this length
    start = time.perf_counter()
    encoder.embed(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]

    base = Encoder(EncoderConfig(max_length=max(args.lengths)))
    articles, _ = load_bbc_news()
    long_enough = [t for t in articles if len(base.tokenizer(t)["input_ids"]) > max(args.lengths)]
    texts = long_enough[: args.texts]

    middle = sorted(args.lengths)[len(args.lengths) // 2]
    settings = [(str(n), n, "mean") for n in args.lengths] + [(f"cls@{middle}", middle, "cls")]
    models = {name: _model(shape) for name, shape in SHAPES.items()}
    best: dict[str, dict[str, float]] = {name: {} for name in SHAPES}
    # Rounds interleave every model and setting, and each cell keeps its best round: a busy spell on the shared
    # machine then slows one round of every cell rather than every round of one cell.
    for _ in range(args.rounds):
        for name, (model, _) in models.items():
            for key, length, pooling in settings:
                encoder = Encoder(EncoderConfig(max_length=length, pooling=pooling),
                                  model=model if model is not None else base.model, tokenizer=base.tokenizer)
                speed = _texts_per_second(encoder, texts, args.batch_size)
                best[name][key] = max(best[name].get(key, 0.0), speed)
        print({name: {k: round(v, 1) for k, v in speeds.items()} for name, speeds in best.items()}, flush=True)

    rows, results = [], []
    for name, (_, parameters) in models.items():
        speeds = best[name]
        results.append({"model": name, "parameters": parameters, "texts_per_second": speeds})
        rows.append([name, f"{parameters / 1e6:.1f}M", *(f"{speeds[str(n)]:.1f}" for n in args.lengths),
                     f"{speeds[f'cls@{middle}']:.1f}"])

    headers = ["model", "parameters", *(f"texts/s @{n}" for n in args.lengths), f"texts/s @{middle} cls pooling"]
    minilm, bert_base = results[0]["texts_per_second"], results[-1]["texts_per_second"]
    ratio = {n: minilm[str(n)] / bert_base[str(n)] for n in args.lengths}
    notes = (
        f"{len(texts)} BBC articles (each longer than {max(args.lengths)} tokens), batch {args.batch_size}, "
        f"{args.threads} intra-op thread(s), mean pooling unless named; the best of {args.rounds} interleaved "
        "rounds per cell. MiniLM-L6 embeds "
        + ", ".join(f"{ratio[n]:.1f}x" for n in args.lengths)
        + f" as many texts per second as a BERT-base-sized encoder at {', '.join(map(str, args.lengths))} tokens. "
        f"The machine is shared: load average {load_at_start:.1f} at the start, so absolute figures are low; "
        f"compare within one run. Wall time {time.perf_counter() - started:.0f} s."
    )
    write_results("encoder_sizes", "Encoder size, max tokens and pooling vs embedding throughput",
                  {"texts": len(texts), "batch_size": args.batch_size, "threads": args.threads, "rounds": args.rounds,
                   "lengths": args.lengths, "load_average_at_start": load_at_start, "results": results,
                   "minilm_over_bert_base": ratio},
                  markdown_table(headers, rows), notes)


if __name__ == "__main__":
    main()
