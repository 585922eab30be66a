"""Encoder serving backends on BBC news: throughput and the accuracy they keep.

    python bench/encoders.py [--lengths 32 64 128 256] [--throughput-texts 64] [--threads 1]
                             [--f1-max-length 256] [--train-per-label 100] [--test-per-label 60]

Backends: PyTorch fp32, PyTorch dynamic INT8 (per-channel Linear weights), ONNX Runtime fp32 and
ONNX Runtime dynamic INT8 (training/backends.py). Throughput: texts per second embedding BBC articles
truncated to each length (articles are longer than 256 tokens, so every batch is full length),
after one warm-up batch. Accuracy: a frozen-encoder head is trained on fp32 embeddings of a train
split (training.train, mode "frozen"), then the test split is embedded by each backend and scored
with that same head; ratios are to fp32 in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _bbc import CACHE, markdown_table, write_results
from sklearn.metrics import accuracy_score, f1_score

from training.artifacts import Predictor
from training.backends import BACKENDS, ONNX_FILES, build_runner, export_onnx, quantize_onnx
from training.data import BBC_LABELS, load_bbc_news, stratified_sample, stratified_split
from training.embedding_cache import EmbeddingCache
from training.encoder import Encoder, EncoderConfig
from training.train import TrainConfig, train_classifier


def throughput(
    base: Encoder, texts: list[str], lengths: list[int], batch_size: int, workdir: str
) -> dict[str, dict[int, float]]:
    onnx_fp32 = export_onnx(base, os.path.join(workdir, ONNX_FILES["onnx_fp32"]))
    onnx_paths = {
        "onnx_fp32": onnx_fp32,
        "onnx_int8": quantize_onnx(onnx_fp32, os.path.join(workdir, ONNX_FILES["onnx_int8"])),
    }
    out: dict[str, dict[int, float]] = {b: {} for b in BACKENDS}
    for backend in BACKENDS:
        runner = build_runner(base, backend, onnx_path=onnx_paths.get(backend))
        for length in lengths:
            encoder = Encoder(
                EncoderConfig(model_dir=base.config.model_dir, max_length=length),
                model=base.model,
                tokenizer=base.tokenizer,
            )
            encoder.embed(texts[:batch_size], batch_size=batch_size, runner=runner)  # warm-up
            start = time.perf_counter()
            encoder.embed(texts, batch_size=batch_size, runner=runner)
            out[backend][length] = len(texts) / (time.perf_counter() - start)
            print(f"  {backend:10s} {length:4d} tokens: {out[backend][length]:7.1f} texts/s", flush=True)
    return out


def accuracy(args: argparse.Namespace, texts: list[str], labels: list[str]) -> dict[str, dict[str, float]]:
    rest, test = stratified_split(labels, 0.2, seed=0)
    train = rest[stratified_sample([labels[i] for i in rest], 5 * args.train_per_label, seed=0)]
    test = test[stratified_sample([labels[i] for i in test], 5 * args.test_per_label, seed=0)]
    config = TrainConfig(mode="frozen", encoder=EncoderConfig(max_length=args.f1_max_length), seed=0)
    model = train_classifier(
        [texts[i] for i in train],
        [labels[i] for i in train],
        BBC_LABELS,
        config=config,
        cache=EmbeddingCache(CACHE),
    )
    test_texts = [texts[i] for i in test]
    y = np.array([BBC_LABELS.index(labels[i]) for i in test])
    results: dict[str, dict[str, float]] = {}
    reference = None
    for backend in BACKENDS:
        start = time.perf_counter()
        prediction = Predictor.from_trained(model, backend=backend).predict(
            test_texts, with_token_stats=False
        )
        seconds = time.perf_counter() - start
        if reference is None:
            reference = prediction
        cosine = (prediction.embeddings * reference.embeddings).sum(1) / (
            np.linalg.norm(prediction.embeddings, axis=1) * np.linalg.norm(reference.embeddings, axis=1)
        )
        results[backend] = {
            "macro_f1": float(f1_score(y, prediction.predicted, average="macro")),
            "accuracy": float(accuracy_score(y, prediction.predicted)),
            "agreement_with_fp32": float((prediction.predicted == reference.predicted).mean()),
            "max_abs_prob_diff": float(np.abs(prediction.probs - reference.probs).max()),
            "min_cosine_to_fp32": float(cosine.min()),
            "seconds": seconds,
        }
        print(f"  {backend:10s} macro-F1 {results[backend]['macro_f1']:.4f}", flush=True)
    results["_split"] = {"n_train": float(len(train)), "n_test": float(len(test))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--throughput-texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--f1-max-length", type=int, default=256)
    parser.add_argument("--train-per-label", type=int, default=100)
    parser.add_argument("--test-per-label", type=int, default=60)
    args = parser.parse_args()

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    texts, labels = load_bbc_news()
    started = time.perf_counter()
    load_before = os.getloadavg()
    print("throughput:", flush=True)
    base = Encoder(EncoderConfig(max_length=max(args.lengths)))
    with tempfile.TemporaryDirectory() as tmp:
        speed = throughput(
            base,
            texts[:: len(texts) // args.throughput_texts][: args.throughput_texts],
            args.lengths,
            args.batch_size,
            tmp,
        )
    print("accuracy:", flush=True)
    quality = accuracy(args, texts, labels)

    headers = [
        "backend",
        *[f"texts/s @{n}" for n in args.lengths],
        "speed ratio @128" if 128 in args.lengths else "speed ratio",
        "macro-F1",
        "F1 ratio",
        "agreement",
        "min cosine",
    ]
    ratio_length = 128 if 128 in args.lengths else args.lengths[-1]
    rows = []
    for backend in BACKENDS:
        q = quality[backend]
        rows.append(
            [
                backend,
                *[f"{speed[backend][n]:.1f}" for n in args.lengths],
                f"{speed[backend][ratio_length] / speed['torch_fp32'][ratio_length]:.2f}x",
                q["macro_f1"],
                q["macro_f1"] / quality["torch_fp32"]["macro_f1"],
                q["agreement_with_fp32"],
                q["min_cosine_to_fp32"],
            ]
        )
    split = quality.pop("_split")
    notes = (
        f"Throughput: {args.throughput_texts} BBC articles per length, batch {args.batch_size}, "
        f"{args.threads} intra-op thread(s) for both runtimes (the 2 shared cores make 2 OpenMP threads slower "
        f"than 1 under load; load average at start {load_before[0]:.1f}). Accuracy: frozen MiniLM head "
        f"(mean pooling, max_length {args.f1_max_length}) trained on fp32 embeddings of {int(split['n_train'])} "
        f"articles, scored on {int(split['n_test'])} test articles embedded by each backend. "
        f"INT8 = dynamic quantization with per-channel weights. Wall time {time.perf_counter() - started:.0f} s."
    )
    write_results(
        "encoders",
        "Encoder serving backends (PyTorch / ONNX Runtime, fp32 / INT8)",
        {
            "settings": vars(args),
            "throughput_texts_per_second": {b: {str(n): v for n, v in speed[b].items()} for b in BACKENDS},
            "accuracy": quality,
            "split": split,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg(),
        },
        markdown_table(headers, rows),
        notes,
    )


if __name__ == "__main__":
    main()
