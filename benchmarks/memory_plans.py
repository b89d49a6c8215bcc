"""Memory plans for the GPU target (n = 60000, n_test = 10000, d = 784, float64), no device needed.

For each device size it records :func:`ntk_influence.memory_plan` (``backend="jax"``): the peak on
the factorising device, the host peak, the inverse-diagonal method, the named stages, or the
:class:`~ntk_influence.MemoryPlanError` message when the problem does not fit. The plan is
arithmetic on the sizes, so this runs in a second on any machine.

Usage: ``python benchmarks/memory_plans.py [--n 60000] [--n-test 10000] [--devices-gb 40 80 141]``.
Writes ``benchmarks/out/memory_plans.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _runinfo

import ntk_influence as ni

OUT = Path(__file__).resolve().parent / "out"
GB = 1e9


def main(argv: list[str] | None = None) -> int:
    """Compute the plans and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--d", type=int, default=784)
    ap.add_argument("--devices-gb", type=float, nargs="+", default=[40.0, 80.0, 141.0])
    ap.add_argument("--out", default=str(OUT / "memory_plans.json"))
    a = ap.parse_args(argv)
    info = _runinfo.start(None if argv is None else [sys.argv[0], *argv])
    plans = []
    for gb in a.devices_gb:
        row: dict = {"device_gb": gb}
        try:
            p = ni.linalg.memory_plan(a.n, a.n_test, a.d, backend="jax", device_memory=int(gb * GB),
                               host_memory=int(512 * GB))
            row.update(fits=p.fits, factor_device_gb=p.factor_device_bytes / GB,
                       host_gb=p.host_bytes / GB, inverse_diagonal=p.inverse_diagonal,
                       test_block=p.test_block,
                       stages_gb={k: v / GB for k, v in p.stages.items()})
        except ni.errors.MemoryPlanError as e:
            row.update(fits=False, error=str(e))
        plans.append(row)
        print(json.dumps(row))
    info.update(n=a.n, n_test=a.n_test, d=a.d, dtype="float64", host_gb_assumed=512,
                plans=plans)
    _runinfo.write(info, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
