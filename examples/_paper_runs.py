"""The paper's experiment, run once for the examples that draw Figure 1.

The exact gradient flow and the paper's gradient descent (lr 0.01 x 30000 steps, t = steps x lr
= 300) on the paper preset with seed 0: the problem that ``flowsim integrate`` and
``flowsim integrate --method gd`` solve.  The first script to ask runs them into the result
directories ``examples/out/flow`` and ``examples/out/gd``; later ones load them from there (a
directory holding another configuration, or an unfinished run, is run again).  Public API only.
"""

from pathlib import Path

import flowsim

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
CONFIGS = {
    "flow": flowsim.RunConfig.preset("paper"),
    "gd": flowsim.RunConfig.preset("paper").merge({"method": "gd"}),
}
LABELS = ("exact gradient flow", "gradient descent, lr 0.01")


def paper_runs() -> list[flowsim.FlowResult]:
    """The flow's and gradient descent's trajectories, in that order."""
    results = []
    for name, config in CONFIGS.items():
        path = OUT / name
        run = _saved(path, config)
        if run is None:
            print(f"{name}: running into {path} (once: the other examples reuse it)")
            run = flowsim.run(config, path, force=True, progress=True)
        r = run.result
        print(f"{name:4s}: T1 = {r.events['phase1_end']:.4g}, final loss = {r.observables['loss'][-1]:.4e}  ({path})")
        results.append(r)
    return results


def _saved(path: Path, config: flowsim.RunConfig) -> flowsim.Run | None:
    """The complete run of ``config`` in ``path``, or ``None`` if there is none."""
    try:
        run = flowsim.load(path)
    except flowsim.ConfigError:  # no directory yet, or not a result directory
        return None
    return run if run.status == "complete" and run.config == config.resolved() else None
