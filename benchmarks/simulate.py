"""The full workload replay: every policy on a whole SWF trace, written as JSON.

    .venv/bin/python benchmarks/simulate.py                      # KTH-SP2 on us-east-1 2021
    .venv/bin/python benchmarks/simulate.py --trace NASA-iPSC-1993-3.1-cln.swf.gz \
        --prices aws-spot-sa-east-1-linux-2019-12_2020-03.csv.gz

File names are looked up in ``--data`` (default ``../shared/data`` beside the checkout). The JSON
(``benchmarks/results/simulate_<trace>_<region>.json``) holds the rows ``gridbridge simulate
--format json`` prints, the site parameters, the seed and how long each replay took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gridbridge.sim.workload import Inputs, prepare, run_policies, summarize
from gridbridge.sim.workload.command import describe_sites
from gridbridge.sim.workload.run import policy_names

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--trace", default="KTH-SP2-1996-2.1-cln.swf.gz")
    parser.add_argument("--prices", default="aws-spot-us-east-1-linux-2021-03_2021-05.csv.gz")
    parser.add_argument("--advisor", default="aws-spot-advisor-2021-02.json.gz")
    parser.add_argument("--ondemand", default="aws-ec2-ondemand-prices-2019-04.csv.gz")
    parser.add_argument("--sites", default=None, help="a sites YAML (default: the defaults)")
    parser.add_argument("--policy", default="all", help="all, or names separated by commas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    d = args.data
    setup = prepare(Inputs(trace=str(d / args.trace), spot_prices=str(d / args.prices),
                           spot_advisor=str(d / args.advisor), ondemand=str(d / args.ondemand),
                           sites=args.sites))
    names = [n for p in args.policy.split(",") for n in policy_names(p)]
    if "on-demand-only" not in names:
        names.append("on-demand-only")
    results, seconds = [], {}
    for name in names:
        start = time.perf_counter()
        results += run_policies(setup, [name], args.seed)
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    od = next(r for r in results if r.policy == "on-demand-only")
    od_cost = sum(a.cost for a in od.attempts)
    rows = [{**summarize(r, od_cost), "replay_s": seconds[r.policy]} for r in results]
    region = setup.federation.prices.region if setup.federation.prices else "none"
    out = args.out or HERE / "results" / f"simulate_{setup.trace.name}_{region}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "trace": args.trace, "prices": args.prices, "advisor": args.advisor,
        "ondemand": args.ondemand, "sites_file": args.sites, "seed": args.seed,
        "jobs": len(setup.trace.jobs), "sites": describe_sites(setup), "notes": setup.notes,
        "rows": rows}, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
