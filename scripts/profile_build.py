"""Time and memory of each stage before a fit's first draw (docs/performance.md, "Scale").

    python scripts/profile_build.py default                  # the embedded default
    python scripts/profile_build.py sim30/panel.csv          # a panel from `bayes-spill simulate`
    python scripts/profile_build.py sim30/panel.csv --gradient --json stages.json

The stages are those of `bayes-spill fit` with no --model (config.DEFAULT_MODEL):
reading the panel, the spillover inputs, ModelData, the
half-life table, the field table, the production whitening, the PyMC model (with the tables
already built) and the preflight checks; with --gradient also the C-compiled log-density and
gradient and its median time. Each stage gives wall and CPU seconds (CPU is steadier on a shared
machine) and the process's peak resident memory after it.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a panel file, or 'default' for the embedded data")
    parser.add_argument("--model", help="a model name or TOML (default: config.DEFAULT_MODEL)")
    parser.add_argument("--gradient", action="store_true", help="also compile (C) and time one gradient")
    parser.add_argument("--json", help="write the stages to this file")
    args = parser.parse_args()

    from bayes_spill.inference.fitting import resolve_model_and_data
    from bayes_spill.model import likelihood, preflight

    rows: list[dict] = []

    def stage(name, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"stage": name, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mib": round(peak)})
        print(f"{name:34s} {wall:9.3f} s wall {cpu:9.3f} s CPU   peak RSS {peak:7.0f} MiB", flush=True)
        return out

    data_arg = None if args.data == "default" else args.data
    config, panel, _ = stage("read panel", lambda: resolve_model_and_data(args.model, data_arg))
    print(f"  {config.name}: {panel.n_firms} firms, {panel.n_obs} firm-years, {len(panel.occupied)} occupied counties")
    spec = config.model
    stage("spillover inputs", lambda: spec.spillover_transform.inputs(panel, spec.choice_set, spec.sbar_year))
    data = stage("ModelData", lambda: likelihood.model_data(panel, config))
    if spec.evaluation != "exact":
        stage("half-life table", lambda: data.halflife_table)
        stage("field table", lambda: data.field_table)
    stage("production whitening", lambda: likelihood.production_whitening(data, config))
    model = stage("build_model (tables built)", lambda: likelihood.build_model(panel, config, data))
    stage("preflight", lambda: preflight.before_sampling(model, data, config))
    if args.gradient:
        from bayes_spill.inference import bench

        fn, x, _ = stage("compile log-density + gradient (C)", lambda: bench.compile_gradient(model, "FAST_RUN"))
        ms = bench.time_gradients([(fn, x)], repeats=20, rounds=2)[0]
        rows.append({"stage": "gradient (C, median of 20)", "wall_s": ms / 1000.0})
        print(f"gradient: {ms:.2f} ms (median of 20), {x.size} parameters")
    if args.json:
        record = {"data": args.data, "model": config.name, "firms": panel.n_firms, "stages": rows}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
