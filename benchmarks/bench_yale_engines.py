"""Engines against real ground truth at the filmed view: Extended Yale B photos under known point lights, with the
product's estimated source light and with the input photo's known one, side by side, plus CPU time per relight.

The scoring, the photos, the lights, the measured ambient and the source lights are the project's harness
(``evaluation.yale``, ``python -m evaluation --yale``); this benchmark only runs it twice (``estimated`` and ``known``
source light: the second isolates geometry and shading from the estimate) and times the systems.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_yale_engines.py [--subjects yaleB12 yaleB15 ...] [--max-photos N]
[--engines geometry analytic] [--sources estimated known]``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


class _Timed:
    """A Yale system with its CPU and wall seconds summed over relights."""

    def __init__(self, system) -> None:
        self.system, self.name, self.cpu, self.wall, self.calls = system, system.name, 0.0, 0.0, 0

    def relight(self, *args):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return self.system.relight(*args)
        finally:
            self.cpu += time.process_time() - c0
            self.wall += time.perf_counter() - w0
            self.calls += 1


def main(argv: list[str] | None = None) -> int:
    import cv2

    from evaluation import yale
    from evaluation.dpr import DPR

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", nargs="*", default=[], help="subject folders (default: all of yale_dev)")
    ap.add_argument("--max-photos", type=int, default=0, help="at most N target photos per subject (0: all)")
    ap.add_argument("--engines", nargs="+", default=["geometry", "analytic"])
    ap.add_argument("--sources", nargs="+", default=["estimated", "known"], choices=("estimated", "known"))
    ap.add_argument("--no-dpr", action="store_true")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    for source in args.sources:
        systems = [_Timed(yale.InputYale())] + ([] if args.no_dpr else [_Timed(yale.DPRYale(DPR(
            DATA / "dpr" / "trained_model_03.t7")))]) + [_Timed(yale.EngineSystem(n)) for n in args.engines]
        res = yale.evaluate(DATA / "yale_dev", systems, args.max_photos, args.subjects or 0, source_light=source)
        print(f"\n## source light: {source}; ambient per subject: "
              + ", ".join(f"{r['subject']} {r['ambient_fraction']:.4f}" for r in res.ambient_rows) + "\n")
        print(yale.table(yale.summarise(res.rows), ("system", "bin"), ("corr", "rmse", "strength")))
        print("CPU / wall seconds per relight: " + ", ".join(
            f"{s.name} {s.cpu / max(s.calls, 1):.3f} / {s.wall / max(s.calls, 1):.3f}" for s in systems[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
