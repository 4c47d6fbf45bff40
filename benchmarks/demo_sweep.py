"""Demo accuracy experiments: run the demo's data, texts, train and evaluate stages with other settings.

Not a test: run it by hand, one run per call, e.g.

    PYTHONPATH=. .venv/bin/python benchmarks/demo_sweep.py /tmp/sweep/c96 --align random_crop=96
    PYTHONPATH=. .venv/bin/python benchmarks/demo_sweep.py /tmp/sweep/t04 --align temperature=0.04
    PYTHONPATH=. .venv/bin/python benchmarks/demo_sweep.py /tmp/sweep/s1 --set seed=1   # other split

`--set FIELD=VALUE` overrides a `rali_edge.demo.DemoSettings` field of the full demo, `--align
FIELD=VALUE` a field of the alignment config the demo builds (`rali_edge.train.align.AlignConfig`);
VALUE is JSON (numbers, lists, true/false). Prints the test PLCC/SRCC and writes them to
OUT/sweep.json. The figures in docs/demo_accuracy.md came from runs of the same stages (the earlier
ones two at a time with OMP_NUM_THREADS=1, the later ones one at a time on 2 threads). Results depend
on the thread count (float reduction order) and precision, so compare runs made with the same ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pairs(items: list[str], flag: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} {item!r}: expected FIELD=VALUE")
        out[key] = json.loads(value)
    return out


def main(argv: list[str] | None = None) -> int:
    from rali_edge import demo

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--align", action="append", default=[], metavar="FIELD=VALUE")
    args = ap.parse_args(argv)
    settings_over, align_over = _pairs(args.set, "--set"), _pairs(args.align, "--align")
    settings_over = {k: tuple(v) if isinstance(v, list) else v for k, v in settings_over.items()}
    settings = dataclasses.replace(demo.DemoSettings.full(), **settings_over)

    base_config = demo.train_config

    def train_config(out, s, done):
        cfg = base_config(out, s, done)
        return dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, **align_over))

    demo.train_config = train_config  # the train stage looks it up at call time
    args.out.mkdir(parents=True, exist_ok=True)
    done: dict = {}
    seconds = {}
    for stage in ("data", "texts", "train", "evaluate"):
        start = time.perf_counter()
        done[stage] = demo.STAGE_FUNCTIONS[stage](args.out, settings, done, True)
        seconds[stage] = round(time.perf_counter() - start, 1)
    ev = done["evaluate"]
    result = {"settings": settings_over, "align": align_over, "plcc": ev["plcc"], "srcc": ev["srcc"],
              "seconds": seconds}
    (args.out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{'settings':40s} {'align':30s} {'PLCC':>7s} {'SRCC':>7s}")
    print(f"{json.dumps(settings_over):40s} {json.dumps(align_over):30s} {ev['plcc']:7.4f} {ev['srcc']:7.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
