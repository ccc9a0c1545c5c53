#!/usr/bin/python3
"""bnlab-train and bnlab-report as a user runs them: flags, exit codes, files.

    check_bnlab_train.py --bin-dir build/apps --case NAME [--render-script PATH]

Each case is one ctest test (see tests/CMakeLists.txt). Runs are kept small
(a few hundred steps of a narrow MLP) so the whole file takes seconds.
Exit status 0 when the case passes, 1 with a message naming what differed.
"""

import argparse
import csv
import gzip
import json
import math
import os
import pty
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = {"depth": 3, "width": 64, "train_size": 2048, "val_size": 512, "threads": 1, "log_every": 100,
         "histogram_every": 100, "eval_every": 100}


def to_flags(options):
    """{"steps": 300, "log_every": 50} → ["--steps", "300", "--log-every", "50"]."""
    args = []
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


def small(**overrides):
    """Flags of a small run; keyword arguments override or add flags."""
    return to_flags({**SMALL, **overrides})


class CaseFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CaseFailed(message)


class Env:
    def __init__(self, bin_dir, work, render_script):
        self.train = str(Path(bin_dir).resolve() / "bnlab-train")
        self.report = str(Path(bin_dir).resolve() / "bnlab-report")
        self.work = Path(work)
        self.render_script = render_script

    def run(self, *args, timeout=300, binary=None):
        cmd = [binary or self.train, *map(str, args)]
        p = subprocess.run(cmd, cwd=self.work, capture_output=True, text=True, timeout=timeout)
        return p

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        expect(p.returncode == 0, f"{' '.join(map(str, args))}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---- cases -------------------------------------------------------------------

def case_usage_errors(env):
    """Every invalid flag or config value: exit code 2 and a message naming it."""
    (env.work / "bad.json").write_text("{ \"steps\": 5, ")
    (env.work / "unknown_key.json").write_text(json.dumps({"steps": 5, "widht": 10}))
    (env.work / "wrong_type.json").write_text(json.dumps({"steps": "many"}))
    (env.work / "not_object.json").write_text("[1, 2]")
    (env.work / "words.txt").write_text("ab\n")
    cases = [
        (["--bogus"], "--bogus"),
        (["--steps", "abc"], "--steps"),
        (["--activation", "swish"], "swish"),
        (["--depth", "-1"], "depth"),
        (["--batch-size", "0"], "batch_size"),
        (["--batch-norm", "middle"], "middle"),
        (["--batch-norm", "none", "--fuse-batch-norm"], "fuse_batch_norm"),
        (["--sinks", "csv,xml"], "xml"),
        (["--lr", "-0.1"], "lr"),
        (["--saturation-threshold", "1.5"], "saturation_threshold"),
        (["--percentile-sample", "-1"], "percentile_sample"),
        (["--optimizer", "rmsprop"], "rmsprop"),
        (["--schedule", "linear"], "linear"),
        (["--steps", "0", "--epochs", "0"], "steps"),
        (["--dataset", "names"], "data_path"),
        (["--dataset", "names", "--data-path", "no_such_words.txt"], "no_such_words.txt"),
        (["--dataset", "mnist", "--data-path", "words.txt"], "words.txt"),
        (["--config", "missing.json"], "missing.json"),
        (["--config", "bad.json"], "bad.json"),
        (["--config", "unknown_key.json"], "widht"),
        (["--config", "wrong_type.json"], "steps"),
        (["--config", "not_object.json"], "object"),
        (["--resume", "--out", "never_ran"], "checkpoint"),
        (["study", "--activations", "tanh,swish"], "swish"),
        (["study", "--batch-norms", "none,sideways"], "sideways"),
        (["probe", "--width", "0"], "width"),
        (["probe", "--inputs", "1"], "inputs"),
        (["probe", "--bogus"], "--bogus"),
    ]
    for args, named in cases:
        p = env.run(*args, timeout=60)
        expect(p.returncode == 2, f"bnlab-train {' '.join(args)}: expected exit code 2, got {p.returncode}\n"
                                  f"stdout: {p.stdout}\nstderr: {p.stderr}")
        expect(named in p.stderr, f"bnlab-train {' '.join(args)}: the message should name {named!r}; got: {p.stderr}")
        expect("terminate called" not in p.stderr and "Segmentation" not in p.stderr,
               f"bnlab-train {' '.join(args)}: crashed: {p.stderr}")
    expect(not (env.work / "never_ran" / "metrics.csv").exists(), "a refused --resume must not start writing metrics")
    # Help and version exit 0 and cover every option of the config.
    h = env.ok("--help")
    for flag in ["--dataset", "--data-path", "--activation", "--batch-norm", "--init", "--gain", "--optimizer",
                 "--schedule", "--batch-size", "--steps", "--seed", "--threads", "--out", "--sinks", "--resume",
                 "--config", "--checkpoint-every"]:
        expect(flag in h.stdout, f"--help does not list {flag}")
    for sub in ["study", "probe"]:
        expect(sub in h.stdout, f"--help does not list the subcommand {sub}")
    expect("--activations" in env.ok("study", "--help").stdout, "study --help does not list --activations")
    expect(env.ok("--version").stdout.strip().startswith("bnlab-train"), "--version")
    # bnlab-report: no folder, a folder that is not a run.
    (env.work / "empty_dir").mkdir()
    p = env.run(binary=env.report)
    expect(p.returncode == 2, f"bnlab-report without folders: expected exit 2, got {p.returncode}: {p.stderr}")
    p = env.run("empty_dir", binary=env.report)
    expect(p.returncode != 0 and "empty_dir" in p.stderr,
           f"bnlab-report on a folder without runs should fail naming it: {p.returncode} {p.stderr}")


def case_config_file(env):
    """A JSON config supplies values; flags override it; config.json records the result."""
    (env.work / "c.json").write_text(json.dumps({"steps": 40, "lr": 0.01, "activation": "elu", "alpha": 0.5,
                                                 "width": 16, "depth": 2, "sinks": ["csv"], "batch_norm": "after"}))
    env.ok("--config", "c.json", "--steps", "25", "--out", "cfg", "--threads", "1")
    written = json.loads((env.work / "cfg" / "config.json").read_text())
    expect(written["steps"] == 25, f"the --steps flag should override the file: {written['steps']}")
    for key, value in [("lr", 0.01), ("activation", "elu"), ("alpha", 0.5), ("width", 16), ("depth", 2),
                       ("sinks", ["csv"]), ("batch_norm", "after")]:
        expect(written[key] == value, f"config.json {key}: expected {value!r} from the file, got {written[key]!r}")
    rows = list(csv.DictReader(open(env.work / "cfg" / "metrics.csv")))
    expect(max(int(r["step"]) for r in rows) == 24, "25 steps should be recorded (0..24)")
    expect(not (env.work / "cfg" / "metrics.jsonl").exists(), "only the csv sink was asked for")
    types = {r["type"] for r in rows}
    expect("ELU" in types and "BatchNorm1d" in types, f"the model should have ELU and BatchNorm1d layers: {types}")
    # The written config.json is itself a valid config: it reproduces the run.
    env.ok("--config", "cfg/config.json", "--out", "cfg2")
    expect((env.work / "cfg" / "metrics.csv").read_bytes() == (env.work / "cfg2" / "metrics.csv").read_bytes(),
           "re-running from the written config.json should give the same metrics")
    # --percentile-sample reaches the recorder: 0 leaves the percentile columns
    # empty and keeps the activation's other metrics.
    activations = [r for r in rows if r["kind"] == "activation"]
    expect(activations and all(r["input_p50"] != "" for r in activations),
           "the default run should record the input percentiles of every activation row")
    env.ok("--config", "c.json", "--steps", "5", "--percentile-sample", "0", "--out", "nop", "--threads", "1")
    expect(json.loads((env.work / "nop" / "config.json").read_text())["percentile_sample"] == 0,
           "config.json should record --percentile-sample")
    nop = [r for r in csv.DictReader(open(env.work / "nop" / "metrics.csv")) if r["kind"] == "activation"]
    expect(len(nop) == 5 * 2, f"one ELU row per block and step, got {len(nop)}")
    for r in nop:
        expect(r["input_p15"] == r["input_p50"] == r["input_p85"] == "",
               f"{r['layer']} step {r['step']}: --percentile-sample 0 should leave the percentiles empty: {r}")
        expect(r["saturation_pct"] != "" and r["input_std"] != "", f"{r['layer']}: other metrics missing")


def case_fused(env):
    """--fuse-batch-norm trains the same network with one BatchNormAct per block:
    the same losses as the unfused run (to float rounding), and its rows carry
    both the activation's and the BatchNorm's metrics. Data-parallel runs
    refuse it (their BatchNorm is synchronized across ranks)."""
    args = small(steps=60, eval_every=30, histogram_every=30)
    env.ok(*args, "--out", "plain")
    env.ok(*args, "--fuse-batch-norm", "--out", "fused")
    plain, fused = losses(env.work / "plain" / "metrics.jsonl"), losses(env.work / "fused" / "metrics.jsonl")
    expect(len(plain) == len(fused) == 60, f"60 steps each, got {len(plain)} and {len(fused)}")
    for step, (a, b) in enumerate(zip(plain, fused)):
        expect(abs(a - b) <= 1e-3 * max(1.0, abs(a)), f"step {step}: fused loss {b} against {a} unfused")
    rows = [r for r in csv.DictReader(open(env.work / "fused" / "metrics.csv")) if r["type"] == "BatchNormAct"]
    expect(len(rows) == 60 * SMALL["depth"], f"one BatchNormAct row per block and step, got {len(rows)}")
    for r in rows:
        for column in ["saturation_pct", "input_p50", "bn_batch_var", "bn_mean_drift", "weight_grad_norm"]:
            expect(r[column] != "", f"{r['layer']} step {r['step']}: empty {column}")
    expect(not any(r["type"] == "BatchNorm1d" for r in csv.DictReader(open(env.work / "fused" / "metrics.csv"))),
           "a fused run has no separate BatchNorm1d layers")
    p = subprocess.run([env.train, *small(steps=5), "--fuse-batch-norm", "--out", "dp"], cwd=env.work,
                       env=first_of_two_ranks_env(), capture_output=True, text=True, timeout=60)
    expect(p.returncode == 2 and "fuse_batch_norm: a data-parallel run synchronizes BatchNorm" in p.stderr,
           f"a data-parallel rank with --fuse-batch-norm: exit {p.returncode}\n{p.stderr[-1500:]}")


def case_reproducible(env):
    """The same seed and thread count give byte-identical metrics files."""
    args = small(steps=300, threads=2, activation="gelu", optimizer="adamw", lr=0.003, schedule="cosine",
                 warmup_steps=20)
    env.ok(*args, "--out", "a")
    env.ok(*args, "--out", "b")
    config_a = json.loads((env.work / "a" / "config.json").read_text())
    config_b = json.loads((env.work / "b" / "config.json").read_text())
    expect(config_a.pop("out") == "a" and config_b.pop("out") == "b" and config_a == config_b, "config.json")
    for name in ["metrics.csv", "metrics.jsonl", "summary.json"]:
        a = (env.work / "a" / name).read_bytes()
        b = (env.work / "b" / name).read_bytes()
        expect(len(a) > 0 and a == b, f"{name} differs between two runs with the same seed and threads")
    env.ok(*args, "--seed", "7", "--out", "c")
    expect((env.work / "a" / "metrics.csv").read_bytes() != (env.work / "c" / "metrics.csv").read_bytes(),
           "a different seed should give different metrics")
    # Timings live apart from the deterministic files.
    timing = json.loads((env.work / "a" / "timing.json").read_text())
    expect(timing["steps_run"] == 300 and timing["seconds"] > 0, f"timing.json: {timing}")


def wait_for(predicate, timeout, what, poll=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise CaseFailed(f"timed out after {timeout}s waiting for {what}")


def metrics_steps(path):
    rows = list(csv.DictReader(open(path)))
    return sorted({int(r["step"]) for r in rows})


def case_interrupt_resume(env):
    """Ctrl-C: exit 130 after flushing metrics and writing a checkpoint; --resume
    then gives the same files as an uninterrupted run."""
    args = small(steps=4000, histogram_every=500, eval_every=700)
    env.ok(*args, "--out", "whole")
    proc = subprocess.Popen([env.train, *args, "--out", "cut"], cwd=env.work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Interrupt once training is under way (the first progress line).
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(r"step +\d+/4000", line):
            break
    expect(proc.poll() is None, "the run ended before it could be interrupted:\n" + "".join(seen))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    expect(proc.returncode == 130, f"Ctrl-C should exit with 130, got {proc.returncode}\n{out}")
    ckpt = env.work / "cut" / "checkpoint.pt"
    expect(ckpt.exists(), "Ctrl-C should write a checkpoint")
    steps = metrics_steps(env.work / "cut" / "metrics.csv")
    expect(steps == list(range(len(steps))) and 0 < len(steps) < 4000,
           f"the metrics of every step run should be flushed: steps {steps[:3]}..{steps[-3:]}")
    summary = json.loads((env.work / "cut" / "summary.json").read_text())
    expect(summary["interrupted"] is True, "summary.json should say the run was interrupted")
    p = env.ok(*args, "--out", "cut", "--resume")
    expect(f"from step {len(steps)}" in p.stderr, f"resume should continue at step {len(steps)}: {p.stderr[-500:]}")
    for name in ["metrics.csv", "metrics.jsonl", "summary.json"]:
        a = (env.work / "whole" / name).read_bytes()
        b = (env.work / "cut" / name).read_bytes()
        expect(a == b, f"{name}: interrupted + resumed differs from the uninterrupted run")


def case_kill_during_checkpoint(env):
    """SIGKILL at random moments of a run that checkpoints every step (most of
    its time is spent writing them): the checkpoint on disk always loads, and
    the run finished by resuming equals an uninterrupted one."""
    options = {"depth": 4, "width": 512, "train_size": 1024, "val_size": 128, "threads": 1, "optimizer": "adam",
               "lr": 0.001, "steps": 60, "log_every": 0, "eval_every": 0, "histogram_every": 0, "sinks": "csv,jsonl"}
    args = to_flags(options)
    env.ok(*args, "--out", "whole")
    rng = random.Random(20261125)
    ckpt = env.work / "killed" / "checkpoint.pt"
    kills = mid_write = 0
    for attempt in range(10):
        extra = ["--resume"] if ckpt.exists() else []
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        proc = subprocess.Popen([env.train, *args, "--checkpoint-every", "1", "--out", "killed", *extra],
                                cwd=env.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Once this process has saved its first checkpoint it alternates steps and
        # saves. Even attempts kill it as soon as its next temporary file appears
        # (mid-write); odd ones a few milliseconds later (anywhere).
        wait_for(lambda: (ckpt.exists() and ckpt.stat().st_mtime_ns != before) or proc.poll() is not None, 120,
                 "a checkpoint")
        if attempt % 2 == 0:
            wait_for(lambda: any((env.work / "killed").glob("checkpoint.pt.tmp.*")) or proc.poll() is not None, 120,
                     "a checkpoint being written", poll=0.001)
        else:
            time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:
            err = proc.stderr.read()
            expect(proc.returncode == 0, f"a resumed run failed (exit {proc.returncode}): {err}")
            break
        proc.kill()
        proc.wait()
        kills += 1
        mid_write += bool(list((env.work / "killed").glob("checkpoint.pt.tmp.*")))
        # What is on disk must load: resuming it with a total of 1 step loads it and trains no further.
        check = env.run(*to_flags({**options, "steps": 1}), "--out", "killed", "--resume", timeout=120)
        expect(check.returncode == 0 and "resuming" in check.stderr,
               f"after kill {kills}, the checkpoint does not load: {check.stderr[-800:]}")
    print(f"{kills} kills, {mid_write} while a checkpoint was being written")
    expect(kills >= 3, f"the run was killed only {kills} times")
    expect(mid_write >= 3, f"only {mid_write} of the {kills} kills landed while a checkpoint was being written")
    env.ok(*args, "--out", "killed", "--resume")
    leftovers = list((env.work / "killed").glob("checkpoint.pt.tmp.*"))
    expect(not leftovers, f"stale temporary checkpoints remain: {leftovers}")
    for name in ["metrics.csv", "metrics.jsonl"]:
        a = (env.work / "whole" / name).read_bytes()
        b = (env.work / "killed" / name).read_bytes()
        expect(a == b, f"{name}: killed and resumed differs from the uninterrupted run after {kills} kills")


def write_idx_images(path, images):
    n, rows, cols = len(images), 28, 28
    payload = struct.pack(">IIII", 0x803, n, rows, cols) + b"".join(bytes(img) for img in images)
    Path(path).write_bytes(gzip.compress(payload))


def write_idx_labels(path, labels):
    Path(path).write_bytes(struct.pack(">II", 0x801, len(labels)) + bytes(labels))


def synthetic_digits(n, rng):
    """28x28 images whose class is where a bright 7x7 block sits (plus noise)."""
    images, labels = [], []
    for _ in range(n):
        label = rng.randrange(10)
        img = [rng.randrange(40) for _ in range(784)]
        r0, c0 = (label // 5) * 14 + 3, (label % 5) * 5 + 1
        for r in range(r0, r0 + 7):
            for c in range(c0, min(c0 + 4, 28)):
                img[r * 28 + c] = 200 + rng.randrange(55)
        images.append(img)
        labels.append(label)
    return images, labels


def case_datasets(env):
    """The user's own data: a word list (makemore) and an MNIST folder (IDX, gzipped)."""
    rng = random.Random(5)
    words = ["anna", "bob", "emma", "otto", "hannah", "ava", "eve", "elle", "ada", "nan"]
    (env.work / "words.txt").write_text("\n".join(rng.choice(words) for _ in range(600)) + "\n")
    env.ok("--dataset", "names", "--data-path", "words.txt", "--context", "3", "--depth", "2", "--width", "64",
           "--steps", "400", "--optimizer", "adam", "--lr", "0.01", "--threads", "1", "--log-every", "0",
           "--out", "names")
    summary = json.loads((env.work / "names" / "summary.json").read_text())
    vocab = len(set("".join(words))) + 1  # the characters plus '.'
    expect(summary["final_val_loss"] is not None and summary["final_val_loss"] < 0.6 * math.log(vocab),
           f"names: validation loss {summary['final_val_loss']} should be far below uniform guessing "
           f"({math.log(vocab):.3f}) on a 10-word language")
    types = {l["type"] for l in read_jsonl(env.work / "names" / "metrics.jsonl")[0]["layers"]}
    expect("Embedding" in types, f"names: the model should start with an Embedding: {types}")

    mnist = env.work / "mnist"
    mnist.mkdir()
    train_images, train_labels = synthetic_digits(600, rng)
    test_images, test_labels = synthetic_digits(200, rng)
    write_idx_images(mnist / "train-images-idx3-ubyte.gz", train_images)
    write_idx_labels(mnist / "train-labels-idx1-ubyte", train_labels)
    write_idx_images(mnist / "t10k-images-idx3-ubyte.gz", test_images)
    Path(mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
        struct.pack(">II", 0x801, len(test_labels)) + bytes(test_labels)))
    env.ok("--dataset", "mnist", "--data-path", "mnist", "--depth", "2", "--width", "64", "--steps", "150",
           "--batch-size", "64", "--optimizer", "adam", "--lr", "0.003", "--threads", "1", "--log-every", "0",
           "--out", "mnist_run")
    summary = json.loads((env.work / "mnist_run" / "summary.json").read_text())
    expect(summary["final_val_accuracy"] > 0.9,
           f"mnist: validation accuracy {summary['final_val_accuracy']} on block-position digits should exceed 90% "
           "(images and labels read out of step would give ~10%)")
    # A truncated file: a clear error naming the file, exit code 1, no traceback.
    data = (mnist / "train-labels-idx1-ubyte").read_bytes()
    (mnist / "train-labels-idx1-ubyte").write_bytes(data[:-100])
    p = env.run("--dataset", "mnist", "--data-path", "mnist", "--steps", "5", "--out", "mnist_bad")
    expect(p.returncode == 1 and "train-labels-idx1-ubyte" in p.stderr and "truncated" in p.stderr,
           f"a truncated IDX file: expected exit 1 naming the file, got {p.returncode}: {p.stderr}")


def case_progress(env):
    """Not a terminal: plain log lines with step, loss, steps/s, ETA. A terminal: one live line."""
    p = env.ok(*small(steps=200, log_every=50), "--out", "plain")
    lines = [l for l in p.stderr.splitlines() if re.search(r"step +\d+/200 +loss [\d.]+ +[\d.]+ steps/s +ETA \d+s", l)]
    expect(len(lines) == 4, f"expected 4 progress lines (every 50 of 200 steps), got {len(lines)}:\n{p.stderr}")
    expect("\r" not in p.stderr, "no carriage returns when stderr is not a terminal")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(env.work)
        os.execv(env.train, [env.train, *small(steps=200, log_every=50), "--out", "tty"])
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    expect(os.waitstatus_to_exitcode(status) == 0, f"the run on a terminal failed:\n{text}")
    updates = re.findall(r"\r\[[#.]{30}\] step +\d+/200", text)
    expect(len(updates) >= 5, f"a terminal should get a live bar updated in place; got {len(updates)} updates:\n{text}")
    expect("[##############################] step     200/200" in text, "the bar should end full at 200/200")


def case_probe(env):
    """tanh over a 500x500 unit-variance matrix saturates; through BatchNorm it does not."""
    p = env.ok("probe", "--out", "probe")
    j = json.loads((env.work / "probe" / "probe.json").read_text())
    width, inputs = j["config"]["width"], j["config"]["inputs"]
    expect((width, inputs) == (500, 16), f"the default probe is 16 inputs over 500x500: {width}, {inputs}")
    # x·W with x, W ~ N(0, 1): each pre-activation ~ N(0, width); |tanh(z)| > 0.97 iff |z| > atanh(0.97).
    threshold = math.atanh(0.97)
    expected_without = 100 * math.erfc(threshold / math.sqrt(2 * width))
    expected_with = 100 * math.erfc(threshold / math.sqrt(2))  # unit variance after BatchNorm
    w, b = j["without_batch_norm"], j["with_batch_norm"]
    # 8000 values; the binomial standard error is at most 100*sqrt(.25/8000) = 0.56 points.
    expect(abs(w["saturation_pct"] - expected_without) < 3, f"without BN: {w['saturation_pct']} vs {expected_without}")
    expect(abs(b["saturation_pct"] - expected_with) < 3, f"with BN: {b['saturation_pct']} vs {expected_with}")
    expect(abs(w["preactivation_std"] - math.sqrt(width)) < 0.1 * math.sqrt(width), f"std {w['preactivation_std']}")
    for side in (w, b):
        for name in ("preactivations", "tanh_outputs"):
            h = side[name]
            expect(sum(h["counts"]) == width * inputs and len(h["edges"]) == len(h["counts"]) + 1,
                   f"{name} histogram: {sum(h['counts'])} values, {len(h['edges'])} edges")
    # The tanh outputs pile up in the end bins without BatchNorm, not with it.
    c = w["tanh_outputs"]["counts"]
    expect((c[0] + c[-1]) > 0.5 * sum(c), "without BatchNorm most tanh outputs sit in the end bins")
    c = b["tanh_outputs"]["counts"]
    expect((c[0] + c[-1]) < 0.2 * sum(c), "with BatchNorm few tanh outputs sit in the end bins")
    expect("saturated" in p.stdout, f"the probe prints its saturation: {p.stdout}")
    expect((env.work / "probe" / "probe_histograms.csv").stat().st_size > 0, "probe_histograms.csv")


def embedded_data(html):
    m = re.search(r"const BNLAB_DATA = (.*?);\n", html, re.S)
    expect(m is not None, "the report does not embed its data")
    return json.loads(m.group(1).replace("<\\/", "</"))


def render(env, html_path):
    p = subprocess.run([sys.executable, env.render_script, "--html", str(html_path)], capture_output=True,
                       text=True, timeout=300)
    expect(p.returncode == 0, f"the report does not render in Chromium:\n{p.stdout}\n{p.stderr}")


def case_study_report(env):
    """A small study: table, summaries, and a report that renders and shows
    BatchNorm keeping tanh and sigmoid out of saturation."""
    p = env.ok("study", "--activations", "tanh,sigmoid,relu", "--steps", "150", "--train-size", "2048",
               "--val-size", "512", "--depth", "4", "--width", "64", "--threads", "1", "--log-every", "0",
               "--out", "study", timeout=600)
    for run in ["tanh", "tanh+bn", "sigmoid", "sigmoid+bn", "relu", "relu+bn"]:
        expect(re.search(rf"^{re.escape(run)} ", p.stdout, re.M), f"the table has no row {run}:\n{p.stdout}")
        expect((env.work / "study" / run / "metrics.jsonl").exists(), f"no metrics for {run}")
    summary = json.loads((env.work / "study" / "summary.json").read_text())
    rows = {r["run"]: r for r in summary["runs"]}
    expect(set(rows) == {"tanh", "tanh+bn", "sigmoid", "sigmoid+bn", "relu", "relu+bn"}, f"summary runs: {set(rows)}")
    with open(env.work / "study" / "summary.csv") as f:
        csv_rows = {r["run"]: r for r in csv.DictReader(f)}
    expect(set(csv_rows) == set(rows), "summary.csv and summary.json list different runs")
    for act in ["tanh", "sigmoid"]:
        expect(rows[act]["saturation_first_pct"] > 3 * rows[act + "+bn"]["saturation_first_pct"],
               f"{act}: BatchNorm should cut the first layer's saturation: {rows[act]['saturation_first_pct']} vs "
               f"{rows[act + '+bn']['saturation_first_pct']}")
    # Each summary row agrees with the run's own metrics (mean first-layer saturation over all steps).
    lines = read_jsonl(env.work / "study" / "tanh" / "metrics.jsonl")
    first = [next(l for l in line["layers"] if l["kind"] == "activation")["saturation_pct"] for line in lines]
    expect(abs(sum(first) / len(first) - rows["tanh"]["saturation_first_pct"]) < 1e-6 * max(1, abs(sum(first))),
           "summary saturation_first_pct is not the mean of the run's metrics")
    html_path = env.work / "study" / "report.html"
    html = html_path.read_text()
    external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|<link\b""",
                          html, re.I)
    expect(not external, f"the report must be self-contained (no external resources): {external}")
    data = embedded_data(html)
    names = [r["name"] for r in data["runs"]]
    expect(sorted(names) == sorted(rows), f"report runs {names}")
    tanh = next(r for r in data["runs"] if r["name"] == "tanh")
    expect(any(h["quantity"] == "output" for h in tanh["histograms"]) or tanh["histograms"],
           "the report should carry activation histograms")
    expect(any(l["kind"] == "activation" and "saturation_pct" in l["series"] for l in tanh["layers"]),
           "the report should carry saturation per layer")
    expect(len(data["study"]["rows"]) == 6, "the report's study table should have 6 rows")
    render(env, html_path)
    # bnlab-report on run folders directly.
    env.ok("study/tanh", "study/tanh+bn", "-o", "pair.html", "--title", "pair", binary=env.report)
    data = embedded_data((env.work / "pair.html").read_text())
    expect([r["name"] for r in data["runs"]] == ["tanh", "tanh+bn"] and data["title"] == "pair", "pair report")
    render(env, env.work / "pair.html")


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_of_two_ranks_env():
    """The environment of rank 0 of a 2-rank launch whose other rank never starts."""
    return {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}


def losses(path):
    return [row["loss"] for row in read_jsonl(path)]


def expect_same_losses(a, b, what):
    """Step for step, within float32 rounding: the ranks sum the batch in a
    different order than one process does (relative 1e-5 ≈ 80 float32 ulps)."""
    expect(len(a) == len(b), f"{what}: {len(a)} steps against {len(b)}")
    worst = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b))
    expect(worst <= 1e-5, f"{what}: losses differ by up to {worst:.3g} (relative) from the single-process run")


def case_distributed(env):
    """Data-parallel runs match the single-process run on the whole batch, step
    for step: `--nproc 2` (its own launcher, torchrun-style agent store), and
    ranks started by hand with torchrun's variables (rank 0 hosts the store),
    with an uneven split (batch 101 over 2 and 3 ranks). Only rank 0 writes."""
    args = small(steps=40, batch_size=101, eval_every=20, histogram_every=20, dist_timeout=30)
    env.ok(*args, "--out", "single")
    single = losses(env.work / "single" / "metrics.jsonl")
    p = env.ok(*args, "--out", "nproc2", "--nproc", 2, timeout=300)
    expect(p.stdout.count("metrics: nproc2/") == 1, f"only rank 0 should print the results:\n{p.stdout}")
    expect_same_losses(single, losses(env.work / "nproc2" / "metrics.jsonl"), "--nproc 2")
    a = json.loads((env.work / "single" / "summary.json").read_text())
    b = json.loads((env.work / "nproc2" / "summary.json").read_text())
    expect(a["final_val_accuracy"] == b["final_val_accuracy"],
           f"validation accuracy {b['final_val_accuracy']} against {a['final_val_accuracy']} single-process")

    port = free_port()
    procs = []
    for rank in range(3):
        child_env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "3",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([env.train, *args, "--out", "env3"], cwd=env.work, env=child_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for rank, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        expect(proc.returncode == 0, f"rank {rank} of 3 (torchrun variables): exit {proc.returncode}\n{err[-2000:]}")
    expect_same_losses(single, losses(env.work / "env3" / "metrics.jsonl"), "3 ranks from torchrun's variables")


def case_distributed_faults(env):
    """A rank killed mid-run ends the job with a message naming it, in bounded
    time; a rank whose peers never join gives up after --dist-timeout; bad
    launcher use is a usage error."""
    args = small(steps=100000, eval_every=0, histogram_every=0, log_every=10, dist_timeout=20)
    proc = subprocess.Popen([env.train, *args, "--out", "killed", "--nproc", "2"], cwd=env.work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The ranks are the launcher's children; wait until both train (metrics appear).
    wait_for(lambda: (env.work / "killed" / "metrics.csv").exists(), 120, "the ranks to start training")
    children = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    expect(len(children) == 2, f"expected 2 rank processes, found {children}")
    # Rank 1 is the second child started.
    rank1 = max(children, key=lambda pid: int(dict(line.split("=", 1) for line in
                Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in line)["RANK"]))
    start = time.time()
    os.kill(rank1, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    elapsed = time.time() - start
    expect(proc.returncode not in (0, None), f"the job should fail when a rank is killed, exit {proc.returncode}")
    expect("rank 1 was killed by signal 9" in err, f"the launcher should say which rank died and how:\n{err[-2000:]}")
    expect("failed on rank 0 of 2" in err or "rank 0 was killed" in err,
           f"rank 0 should report the lost peer (or be stopped):\n{err[-2000:]}")
    expect(elapsed < 60, f"the job took {elapsed:.0f}s to end after a rank died")

    # Ctrl-C on the launcher: forwarded once, every rank stops at the same
    # step, rank 0 writes the checkpoint, exit 130.
    proc = subprocess.Popen([env.train, *args, "--out", "stopped", "--nproc", "2"], cwd=env.work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (env.work / "stopped" / "metrics.csv").exists(), 120, "the ranks to start training")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    expect(proc.returncode == 130, f"Ctrl-C on --nproc 2 should exit 130, got {proc.returncode}\n{err[-2000:]}")
    expect((env.work / "stopped" / "checkpoint.pt").exists(), "Ctrl-C should leave rank 0's checkpoint")

    start = time.time()
    p = subprocess.run([env.train, *small(steps=10, dist_timeout=3), "--out", "lonely"], cwd=env.work,
                       env=first_of_two_ranks_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.time() - start
    expect(p.returncode == 1, f"a rank whose peers never join should exit 1, got {p.returncode}\n{p.stderr[-1500:]}")
    expect("rank 0 of 2 could not connect to the other ranks within 3 s" in p.stderr,
           f"the error should say what did not happen and the timeout:\n{p.stderr[-1500:]}")
    expect(elapsed < 60, f"gave up after {elapsed:.0f}s with a 3 s timeout")

    p = env.run("--nproc", "2", "study", timeout=60)
    expect(p.returncode == 2 and "--nproc trains one run" in p.stderr, f"--nproc with study: {p.returncode} {p.stderr}")
    bad_env = {**os.environ, "RANK": "5", "WORLD_SIZE": "2"}
    p = subprocess.run([env.train, "--steps", "1"], cwd=env.work, env=bad_env, capture_output=True, text=True,
                       timeout=60)
    expect(p.returncode == 2 and "expected RANK to be an integer in [0, 1], got \"5\"" in p.stderr,
           f"RANK outside WORLD_SIZE: {p.returncode} {p.stderr}")


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--render-script", default=str(Path(__file__).resolve().parent.parent / "report" /
                                                       "render_report.py"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix=f"bnlab_app_{args.case}_")
    try:
        CASES[args.case](Env(args.bin_dir, work, args.render_script))
    except CaseFailed as e:
        print(f"FAIL [{args.case}]: {e}\n(work folder: {work})", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"ok [{args.case}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
