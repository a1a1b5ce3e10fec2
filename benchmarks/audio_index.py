"""The audio app's `index` and `query` at scale: throughput, peak memory, query latency.

1. Generates `--clips` clips of the built-in sound classes (apps/audio_similarity/synth.py,
   0.5-1.5 s, 48 classes) in `--workdir/data` (kept for the next run).
2. Runs `python -m apps.audio_similarity index` on the first `--sizes` of them, each in its
   own process (feature cache off: every spectrogram is computed), and reports wall time,
   files per second and the process's peak resident memory (`wait4`): with chunked
   indexing the peak should not grow with the collection.
3. Loads the model and the largest index once (faiss when installed), answers
   `--queries` single-clip queries (decode, log-mel, embed, search; after 3 warm-up
   queries) and reports the median and 95th percentile latency; then the same on an
   index of `--big` entries (the real embeddings repeated with noise, to time the
   search at that size without embedding that many clips).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audio_index.py --clips 4000 --sizes 1000 4000
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MODEL = os.path.join(ROOT, "saved_models", "audio_similarity.keras")


def generate(folder, clips):
    import soundfile

    from apps.audio_similarity import synth

    classes = synth.class_list()
    done = 0
    for n in range(clips):
        _, s, v, name, _ = classes[n % len(classes)]
        path = os.path.join(folder, name, f"{n // len(classes):05d}.wav")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            soundfile.write(path, synth.synthesize(s, v, n // len(classes)), 16000, subtype="PCM_16")
            done += 1
    return done


def subset(data, size, folder):
    """A folder of symbolic links to the first `size` clips (in the generation order)."""
    names = sorted(os.listdir(data))
    per_class = -(-size // len(names))
    count = 0
    for i in range(per_class):
        for name in names:
            if count == size:
                return folder
            src = os.path.join(data, name, f"{i:05d}.wav")
            dst = os.path.join(folder, name, f"{i:05d}.wav")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.exists(dst):
                os.symlink(src, dst)
            count += 1
    return folder


def index(folder, out, chunk):
    cmd = [sys.executable, "-m", "apps.audio_similarity", "index", folder, "--model", MODEL]
    cmd += ["--out", out, "--cache-dir", "", "--quiet", "--chunk", str(chunk)]
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"index failed ({status})")
    return seconds, usage.ru_maxrss / 1024  # KiB -> MiB on Linux


def latency(model, settings, frames, idx, files):
    from apps.audio_similarity import search

    for f in files[:3]:
        search.query_files(model, settings, frames, idx, [f], 5)
    times = []
    for f in files:
        t0 = time.perf_counter()
        results, _ = search.query_files(model, settings, frames, idx, [f], 5)
        times.append(1000 * (time.perf_counter() - t0))
        assert results
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=os.path.join(ROOT, ".cache", "audio_index_bench"))
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()

    import keras

    data = os.path.join(args.workdir, "data")
    t0 = time.perf_counter()
    made = generate(data, args.clips)
    print(f"data: {args.clips} clips in {data} ({made} generated in {time.perf_counter() - t0:.0f} s)")
    print(f"backend {keras.backend.backend()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("| clips | chunk | index wall time | files/s | peak RSS |")
    print("|---|---|---|---|---|")
    out = None
    for size in args.sizes:
        folder = subset(data, size, os.path.join(args.workdir, f"subset-{size}"))
        out = os.path.join(args.workdir, f"index-{size}.npz")
        seconds, rss = index(folder, out, args.chunk)
        print(
            f"| {size} | {args.chunk} | {seconds:.0f} s | {size / seconds:.1f} | {rss:.0f} MiB |", flush=True
        )

    from apps.audio_similarity import search
    from apps.audio_similarity.model import load_model
    from keras_triplet.index import EmbeddingIndex

    model, settings, frames = load_model(MODEL)
    idx, _ = search.load_index(out, MODEL)
    rng = np.random.default_rng(0)
    files = [str(f) for f in rng.choice(idx.ids, size=min(args.queries, len(idx)), replace=False)]
    med, p95 = latency(model, settings, frames, idx, files)
    print(f"query, index of {len(idx)} clips ({idx.backend}): median {med:.1f} ms, p95 {p95:.1f} ms")

    reps = -(-args.big // len(idx))
    emb = np.tile(idx.embeddings, (reps, 1))[: args.big]
    emb = emb + rng.normal(0, 0.02, emb.shape).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    big = EmbeddingIndex(metric=idx.metric, backend=idx.backend)
    big.add(
        emb,
        labels=np.resize(idx.labels, args.big),
        ids=np.array([f"/c/{i:06d}.wav" for i in range(args.big)]),
    )
    big_path = os.path.join(args.workdir, f"index-big-{args.big}.npz")
    big.save(big_path)
    big, _ = search.load_index(big_path, MODEL)
    t0 = time.perf_counter()
    big.search(emb[:1], 5)  # builds the faiss index once
    print(
        f"index of {len(big)} entries: first search (builds the search structure) {1000 * (time.perf_counter() - t0):.0f} ms"
    )
    med, p95 = latency(model, settings, frames, big, files)
    print(f"query, index of {len(big)} entries ({big.backend}): median {med:.1f} ms, p95 {p95:.1f} ms")
    t0 = time.perf_counter()
    for q in emb[:200]:
        big.search(q[None], 5)
    print(f"search alone, {len(big)} entries: {1000 * (time.perf_counter() - t0) / 200:.2f} ms per query")


if __name__ == "__main__":
    main()
