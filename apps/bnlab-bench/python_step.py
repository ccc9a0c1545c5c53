#!/usr/bin/python3
"""The eager-PyTorch side of bnlab-bench's training-step comparison.

Builds bnlab-train's default MLP in plain PyTorch — [Linear(bias=False) →
BatchNorm1d → Tanh] × depth → Linear — with SGD and momentum, then waits for
commands on stdin, one per line:

    run N    train N steps; answer the seconds they took (time.perf_counter)
    quit     exit

The first line of output is "ready <torch version>". The training loop is the
one PyTorch users write: zero_grad (set_to_none, as bnlab's Trainer), forward, cross_entropy, backward, step,
loss.item() for logging.
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--examples", type=int, default=8192)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layers, width_in = [], a.features
    for _ in range(a.depth):
        layers += [nn.Linear(width_in, a.width, bias=False), nn.BatchNorm1d(a.width), nn.Tanh()]
        width_in = a.width
    layers.append(nn.Linear(width_in, a.classes))
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    x_all = torch.randn(a.examples, a.features)
    y_all = torch.randint(0, a.classes, (a.examples,))
    batches = a.examples // a.batch
    step = 0

    def train_step():
        nonlocal step
        i = (step % batches) * a.batch
        x, y = x_all[i:i + a.batch], y_all[i:i + a.batch]
        opt.zero_grad(set_to_none=True)  # the default from PyTorch 2.0 on, and what bnlab's Trainer does
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        step += 1

    print(f"ready {torch.__version__}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "run":
            n = int(words[1])
            start = time.perf_counter()
            for _ in range(n):
                train_step()
            print(f"{time.perf_counter() - start:.9f}", flush=True)
        else:
            print(f"error unknown command {words[0]}", flush=True)


if __name__ == "__main__":
    main()
