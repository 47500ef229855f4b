#!/usr/bin/env python3
"""Draws send latency against offered load from axon-bench reports (the latency_sweep
scenario) as a PNG: p50 and p99 for each server, on a log scale.

    bench/plot.py OUT.png LABEL=REPORT.json [LABEL=REPORT.json ...]

Needs matplotlib (bench/compare.sh installs it into the Synapse venv)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, reports = sys.argv[1], sys.argv[2:]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for n, arg in enumerate(reports):
        label, _, path = arg.partition("=")
        points = json.load(open(path))["results"].get("latency_sweep", {}).get("points", [])
        points = [p for p in points if p.get("count")]
        if not points:
            print(f"{path}: no latency_sweep points", file=sys.stderr)
            continue
        x = [p["achieved_per_s"] for p in points]
        colour = colours[n % len(colours)]
        ax.plot(x, [p["p50_ms"] for p in points], "o-", color=colour, label=f"{label} p50")
        ax.plot(x, [p["p99_ms"] for p in points], "s--", color=colour, label=f"{label} p99")
    ax.set_yscale("log")
    ax.set_xlabel("messages per second accepted (20 senders, one room each)")
    ax.set_ylabel("send latency, ms (log)")
    ax.set_title("Send latency against load")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


main()
